"""Outgoing email, rendered from the Jinja templates in templates/email/.

A message is rendered in the request and handed to the Celery task `backend.tasks.send_email`
(sent by name on the `default` queue, after the commit of whatever caused it): the answer
never waits for (or reveals, by its timing, the existence of) an SMTP exchange. The task
calls `deliver`, and retries transient failures (`is_transient`) after `retry_delay`.
"""

import logging
import random
import smtplib
from email.message import EmailMessage
from email.utils import formataddr
from urllib.parse import urlencode

from flask import current_app, render_template

log = logging.getLogger(__name__)
EMAIL_TASK = "backend.tasks.send_email"
EMAIL_QUEUE = "default"


def emails_enabled() -> bool:
    config = current_app.config
    return bool(config.get("SMTP_HOST") and config.get("EMAILS_FROM_EMAIL"))


def send_email(to: str, subject: str, html: str, text: str | None = None) -> bool:
    """Enqueues one rendered message; returns False (and logs why) when it was not enqueued:
    emails are not configured, or the broker cannot be reached (the caller answers as usual)."""
    if not emails_enabled():
        log.info("SMTP_HOST is not set: not sending %r to %s", subject, to)
        return False
    celery = current_app.extensions["celery"]
    message = {"to": to, "subject": subject, "html": html, "text": text}
    try:
        # A signature runs the registered task in this process under task_always_eager;
        # otherwise it is published by name (nothing here imports the tasks).
        celery.signature(EMAIL_TASK, kwargs=message, queue=EMAIL_QUEUE).apply_async()
    except Exception:
        log.exception("could not enqueue %r to %s", subject, to)
        return False
    return True


def deliver(to: str, subject: str, html: str, text: str | None = None) -> None:
    """Sends one message over SMTP now; raises smtplib.SMTPException or OSError when it fails."""
    config = current_app.config
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((config["PROJECT_NAME"], config["EMAILS_FROM_EMAIL"]))
    message["To"] = to
    message.set_content(text or "Open this message in an HTML-capable mail client.")
    message.add_alternative(html, subtype="html")
    smtp_class = smtplib.SMTP_SSL if config.get("SMTP_SSL") else smtplib.SMTP
    with smtp_class(config["SMTP_HOST"], config["SMTP_PORT"], timeout=10) as smtp:
        if config.get("SMTP_TLS") and not config.get("SMTP_SSL"):
            smtp.starttls()
        if config.get("SMTP_USER"):
            smtp.login(config["SMTP_USER"], config.get("SMTP_PASSWORD") or "")
        smtp.send_message(message)


def is_transient(error: Exception) -> bool:
    """Whether sending again later may succeed: connection failures and 4xx answers do,
    a permanent (5xx) refusal of the message or of every recipient does not."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return any(code < 500 for code, _message in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code < 500
    return isinstance(error, (OSError, smtplib.SMTPException))


def retry_delay(retries: int) -> float:
    """Seconds before attempt `retries + 2`: EMAIL_RETRY_BACKOFF_SECONDS doubled per retry
    already made, at most EMAIL_RETRY_BACKOFF_MAX_SECONDS, then jittered into its upper
    half (senders that failed together do not retry together)."""
    config = current_app.config
    ceiling = min(
        config["EMAIL_RETRY_BACKOFF_MAX_SECONDS"],
        config["EMAIL_RETRY_BACKOFF_SECONDS"] * 2 ** min(retries, 32),
    )
    return random.uniform(ceiling / 2, ceiling)


def reset_password_link(token: str) -> str:
    return f"{current_app.config['FRONTEND_HOST'].rstrip('/')}/reset-password?{urlencode({'token': token})}"


def _link_context(email: str, token: str, full_name: str | None) -> dict:
    """What the emails carrying a set-password link show."""
    config = current_app.config
    return {
        "project_name": config["PROJECT_NAME"],
        "email": email,
        "full_name": full_name,
        "link": reset_password_link(token),
        "valid_hours": int(config["EMAIL_RESET_TOKEN_EXPIRE"].total_seconds() // 3600),
    }


def _send_link_email(template: str, subject: str, email: str, token: str, full_name: str | None) -> bool:
    """Renders `email/<template>.html` and `.txt` around a set-password link and sends them."""
    context = _link_context(email, token, full_name)
    html = render_template(f"email/{template}.html", **context)
    text = render_template(f"email/{template}.txt", **context)
    return send_email(email, f"{current_app.config['PROJECT_NAME']} - {subject} {email}", html, text)


def send_reset_password_email(email: str, token: str, full_name: str | None = None) -> bool:
    return _send_link_email("reset_password", "Password recovery for user", email, token, full_name)


def send_new_account_email(email: str, token: str, full_name: str | None = None) -> bool:
    """The invitation of an account created without a password: a link to choose one (the
    password-reset link, single use and expiring)."""
    return _send_link_email("new_account", "New account for user", email, token, full_name)


def send_test_email(email: str) -> bool:
    config = current_app.config
    context = {"project_name": config["PROJECT_NAME"]}
    subject = f"{config['PROJECT_NAME']} - Test email"
    html = render_template("email/test_email.html", **context)
    text = render_template("email/test_email.txt", **context)
    return send_email(email, subject, html, text)

"""Outgoing email over SMTP, rendered from the Jinja templates in templates/email/."""

import logging
import smtplib
import threading
from email.message import EmailMessage
from email.utils import formataddr
from urllib.parse import urlencode

from flask import Flask, current_app, render_template

log = logging.getLogger(__name__)


def emails_enabled() -> bool:
    config = current_app.config
    return bool(config.get("SMTP_HOST") and config.get("EMAILS_FROM_EMAIL"))


def send_email(to: str, subject: str, html: str, text: str | None = None) -> bool:
    """Sends one message; returns False (and logs why) when it was not sent."""
    if not emails_enabled():
        log.info("SMTP_HOST is not set: not sending %r to %s", subject, to)
        return False
    config = current_app.config
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((config["PROJECT_NAME"], config["EMAILS_FROM_EMAIL"]))
    message["To"] = to
    message.set_content(text or "Open this message in an HTML-capable mail client.")
    message.add_alternative(html, subtype="html")
    smtp_class = smtplib.SMTP_SSL if config.get("SMTP_SSL") else smtplib.SMTP
    try:
        with smtp_class(config["SMTP_HOST"], config["SMTP_PORT"], timeout=10) as smtp:
            if config.get("SMTP_TLS") and not config.get("SMTP_SSL"):
                smtp.starttls()
            if config.get("SMTP_USER"):
                smtp.login(config["SMTP_USER"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException):
        # The caller answers the same whatever happens here (no account enumeration).
        log.exception("sending %r to %s failed", subject, to)
        return False
    return True


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


def send_reset_password_email(email: str, token: str, full_name: str | None = None) -> bool:
    config = current_app.config
    context = _link_context(email, token, full_name)
    subject = f"{config['PROJECT_NAME']} - Password recovery for user {email}"
    html = render_template("email/reset_password.html", **context)
    text = render_template("email/reset_password.txt", **context)
    return send_email(email, subject, html, text)


def send_new_account_email(email: str, token: str, full_name: str | None = None) -> bool:
    """The invitation of an account created without a password: a link to choose one (the
    password-reset link, single use and expiring)."""
    config = current_app.config
    context = _link_context(email, token, full_name)
    subject = f"{config['PROJECT_NAME']} - New account for user {email}"
    html = render_template("email/new_account.html", **context)
    text = render_template("email/new_account.txt", **context)
    return send_email(email, subject, html, text)


def send_test_email(email: str) -> bool:
    config = current_app.config
    context = {"project_name": config["PROJECT_NAME"]}
    subject = f"{config['PROJECT_NAME']} - Test email"
    html = render_template("email/test_email.html", **context)
    text = render_template("email/test_email.txt", **context)
    return send_email(email, subject, html, text)


def send_in_background(send, *args) -> threading.Thread:
    """Runs `send(*args)` off the request: the answer must not wait for (or reveal,
    by its timing, the existence of) an SMTP exchange. A greenlet under gevent."""
    app: Flask = current_app._get_current_object()

    def run() -> None:
        with app.app_context():
            send(*args)

    thread = threading.Thread(target=run, name="send-email", daemon=True)
    thread.start()
    return thread

"""Emails through the real processes: gunicorn renders the password-recovery email and
enqueues it, the Celery worker (gevent pool, queues agent-runs and default) sends it to a
real SMTP server (aiosmtpd) started here, which answers the first attempt with a 451: the
worker retries after its backoff and the retry delivers."""

import email
import email.policy
import re
import time

import requests
from aiosmtpd.controller import Controller

from tests.e2e.conftest import LOG_DIR
from tests.e2e.harness import start_web
from tests.factories import make_user
from tests.helpers import free_port

LINK = re.compile(r'href="https://app\.example\.com/reset-password\?token=([^"&]+)"')


class _BusyServer:
    """Refuses the first message with a temporary error, then accepts."""

    def __init__(self):
        self.refused = 0
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        if not self.refused:
            self.refused += 1
            return "451 4.3.0 Temporary failure, try again later"
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def test_the_worker_delivers_a_recovery_email_after_a_retry(stack):
    server = _BusyServer()
    port = free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    mail_env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SMTP_TLS": "false",
        "EMAILS_FROM_EMAIL": "noreply@example.com",
        "FRONTEND_HOST": "https://app.example.com",
        "EMAIL_RETRY_BACKOFF_SECONDS": "0.5",
        "EMAIL_RETRY_BACKOFF_MAX_SECONDS": "2",
    }
    stack.kill_workers()
    web = None
    try:
        worker = stack.add_worker(**mail_env)
        web, url = start_web(stack.worker_env(**mail_env), LOG_DIR)
        make_user("forgetful@example.com")
        response = requests.post(f"{url}/api/v1/password-recovery/forgetful@example.com", timeout=10)
        assert response.status_code == 200

        deadline = time.monotonic() + 30
        while not server.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        [envelope] = server.messages
        assert server.refused == 1
        assert envelope.rcpt_tos == ["forgetful@example.com"]
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert "Password recovery" in message["Subject"]
        token = LINK.search(message.get_body(preferencelist=("html",)).get_content()).group(1)

        # The worker sent it (a retry, then success); the web process only enqueued it. The
        # worker logs "succeeded" only after the SMTP server has the message.
        log = worker.output()
        task_ids = set(re.findall(r"backend\.tasks\.send_email\[([0-9a-f-]{36})\] retry", log))
        assert len(task_ids) == 1
        worker.wait_for_output(f"backend.tasks.send_email[{task_ids.pop()}] succeeded", timeout=10)
        assert "Task backend.tasks.send_email" not in web.output()

        response = requests.post(
            f"{url}/api/v1/reset-password/",
            json={"token": token, "new_password": "brand-new-pass"},
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        if web is not None:
            web.stop()
        stack.kill_workers()
        stack.ensure_worker()
        controller.stop()

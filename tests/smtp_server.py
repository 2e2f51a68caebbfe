"""A real SMTP server (aiosmtpd) on a free localhost port that keeps every message it receives."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from tests.conftest import free_port


class MailCatcher:
    """aiosmtpd handler: stores each received message, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """The messages, once at least ``count`` arrived (delivery is synchronous; this is a guard)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


def body_text(msg: EmailMessage) -> str:
    """The HTML body of an alert email, decoded."""
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return str(part.get_content())
    raise AssertionError(f"no text/html part in {msg['Subject']!r}")


def smtp_conn(port: int) -> str:
    """``AIRFLOW_CONN_SMTP_DEFAULT`` for a plain SMTP server on localhost:port."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {
                "from_email": "sluice@test.example",
                "disable_tls": True,
                "disable_ssl": True,
                "timeout": 5,
                "retry_limit": 0,
            },
        }
    )


@pytest.fixture()
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailCatcher]:
    """A running SMTP server; ``smtp_default`` points at it for the test."""
    from aiosmtpd.controller import Controller

    catcher = MailCatcher()
    port = free_port()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(port))
    try:
        yield catcher
    finally:
        controller.stop()

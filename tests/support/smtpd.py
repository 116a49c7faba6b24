"""A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port that keeps what it receives.

Example::

    with SMTPServer() as smtp:
        ...                                      # something sends mail to smtp.port
        smtp.wait_for(1)[0]["Subject"]
"""

from __future__ import annotations

import email
import threading
import time
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.mariadb import free_port


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SMTPServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.sink = _Sink()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Message]:
        with self.sink.lock:
            return list(self.sink.messages)

    def wait_for(self, count: int, timeout: float = 30) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.1)
        raise AssertionError(f"{count} mail(s) expected, {len(self.messages)} received")

"""A real SMTP server (aiosmtpd) and a real HTTP receiver (for Apprise's json:// target),
each on a free local port, and settings that send to them."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.config import Settings
from tests.conftest import METRICS_TOKEN

SMTP_FROM = "vein2vein@hospital.example"
PUBLIC_URL = "https://v2v.hospital.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str


@dataclass
class Mailbox:
    """What the SMTP server received, decoded."""

    port: int
    messages: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        part = msg.get_body(preferencelist=("plain",))
        body = part.get_content().replace("\r\n", "\n") if part is not None else ""
        with self.lock:
            self.messages.append(Mail(list(envelope.rcpt_tos), str(msg["Subject"]), body))
        return "250 OK"

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.messages if address in m.to]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Sink:
    """An HTTP receiver: Apprise's json:// target posts {title, message, type} here."""

    port: int
    posts: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def sink() -> Iterator[Sink]:
    received = Sink(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length", 0))
            received.posts.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(db_url: str, mailbox: Mailbox) -> Settings:
    return Settings(
        database_url=db_url,
        env="test",
        max_body_bytes=256 * 1024,
        scheduler_enabled=False,
        metrics_token=METRICS_TOKEN,
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",  # type: ignore[arg-type]
        smtp_from=SMTP_FROM,
        public_url=PUBLIC_URL,
        notify_allow_private=True,  # the test receivers listen on loopback
    )

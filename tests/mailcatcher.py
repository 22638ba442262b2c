"""A real SMTP server on loopback (aiosmtpd) that keeps every message it receives."""

import email
import re
import socket
import threading
import time
from email import policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    # aiosmtpd's Controller(port=0) does not work: pick a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, inbox):
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        self.inbox.append(msg)
        return "250 OK"


class MailCatcher:
    def __init__(self, port: int | None = None):
        self.messages = []
        self.port = port or free_port()
        self.controller = Controller(_Handler(self.messages), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def to(self, address: str):
        return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, subject_part: str = "", timeout: float = 15.0):
        """The newest message to `address` whose subject contains `subject_part`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.to(address) if subject_part in m["Subject"]]
            if found:
                return found[-1]
            threading.Event().wait(0.05)  # poll until the deadline
        raise AssertionError(f"no e-mail to {address} with {subject_part!r} within {timeout}s")


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def link_in(msg) -> str:
    match = re.search(r"https?://\S+", text_of(msg))
    assert match, "no link in the e-mail"
    return match.group(0)

"""Chat events cross process boundaries: a write handled by one web process reaches a stream
held open by another process on the same database (each process's dispatcher watches SQLite's
data_version, see app/chat/live.py). Plain HTTP, no browser.

The Huey worker's own writes are not covered: none of its tasks makes a chat event (they send
e-mail and note when they did; retention deletes conversations without one), so there is
nothing of the worker's that a stream could show.
"""

import html
import queue
import re
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.conftest import HttpUser, confirmed_user_over_http, unique_email

EVENT_SECONDS = 10.0
TOKEN_HEADER = "X-Lumnar-Visitor"


@dataclass
class Event:
    event: str = "message"
    id: str = ""
    data: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.data)


class EventStream:
    """An SSE stream read in a background thread (httpx streaming), events parsed as they come."""

    def __init__(self, url: str, cookies=None):
        self.url = url
        self.events: queue.Queue = queue.Queue()
        self.seen: list[Event] = []
        self.status: int | None = None
        self.opened = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=60), cookies=cookies)
        self.thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self.error: Exception | None = None

    def __enter__(self):
        self.thread.start()
        if not self.opened.wait(EVENT_SECONDS):
            raise AssertionError(f"{self.url} did not answer within {EVENT_SECONDS}s")
        assert self.status == 200, f"{self.url} answered {self.status}"
        return self

    def __exit__(self, *exc):
        self.client.close()  # ends the read loop
        self.thread.join(EVENT_SECONDS)

    def _read(self):
        try:
            with self.client.stream("GET", self.url) as response:
                self.status = response.status_code
                assert response.headers["content-type"].startswith("text/event-stream")
                self.opened.set()
                current = Event()
                for line in response.iter_lines():
                    if not line:
                        if current.data:
                            self.events.put(current)
                        current = Event()
                    elif line.startswith(":"):
                        continue  # keep-alive comment
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            current.data.append(value)
                        elif name in ("event", "id"):
                            setattr(current, name, value)
        except Exception as exc:  # closed by __exit__, or broken: wait_for() reports it
            self.error = exc
        finally:
            self.opened.set()

    def wait_for(self, needle: str, timeout: float = EVENT_SECONDS) -> Event:
        """The next event containing `needle` (events before it are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no event with {needle!r} on {self.url} within {timeout}s; "
                                     f"got {[e.text[:200] for e in self.seen]}, error {self.error!r}")
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.seen.append(event)
            if needle in event.text:
                return event

    def count(self, needle: str) -> int:
        return sum(needle in e.text for e in self.seen)


@dataclass
class Owner:
    http: HttpUser
    site_key: str


@pytest.fixture(scope="module")
def second_web(live_server):
    """Process B: another uvicorn on the live server's database and settings."""
    url = live_server.start_web("web-b")
    yield url
    live_server.stop_process("web-b")


@pytest.fixture(scope="module")
def owner(live_server):
    email = confirmed_user_over_http(live_server, "xproc")
    with HttpUser(live_server.url) as http:
        http.log_in(email)
        _, key = http.create_site("Cross-process shop", ["https://shop.example.com"])
        yield Owner(http, key)


class Visitor:
    """A widget visitor speaking the widget's HTTP API to one process."""

    def __init__(self, base_url: str, site_key: str):
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.prefix = f"/widget/{site_key}"
        token = self.http.post(f"{self.prefix}/visitors").json()["token"]
        self.http.headers[TOKEN_HEADER] = token
        self.email = unique_email("xvisitor")

    def say(self, text: str) -> None:
        # Nobody has the dashboard open: the team is away, so the e-mail goes along.
        answer = self.http.post(f"{self.prefix}/messages", data={"body": text, "email": self.email})
        assert answer.status_code == 200, answer.text

    def stream_path(self) -> str:
        """The chat's stream URL as the widget would open it (a ticket, and the last event
        the chat shows)."""
        page = self.http.get(f"{self.prefix}/chat").text
        return html.unescape(re.search(r'sse-connect="([^"]+)"', page).group(1))

    def close(self):
        self.http.close()


@pytest.fixture
def make_visitor():
    made = []

    def make(base_url, site_key):
        made.append(Visitor(base_url, site_key))
        return made[-1]

    yield make
    for visitor in made:
        visitor.close()


def conversation_id(owner: Owner, visitor: Visitor) -> int:
    """The id of the visitor's conversation, from the inbox row that shows their e-mail."""
    page = owner.http.get("/dashboard/inbox?filter=all").text
    found = re.search(r'<li id="conv-(\d+)"(?:(?!</li>).)*?' + re.escape(visitor.email), page, re.S)
    assert found, page[:3000]
    return int(found.group(1))


def dashboard_stream_path(owner: Owner) -> str:
    """The inbox's stream URL as the page opens it (after the last event the page shows)."""
    page = owner.http.get("/dashboard/inbox").text
    return html.unescape(re.search(r'sse-connect="(/sse/dashboard[^"]*)"', page).group(1))


def test_agent_reply_on_process_a_reaches_the_visitor_stream_on_process_b(
        live_server, second_web, owner, make_visitor):
    visitor = make_visitor(live_server.url, owner.site_key)
    first = f"Hello from A ({visitor.email})"
    visitor.say(first)
    path = visitor.stream_path()
    assert re.fullmatch(r"/sse/visitor\?ticket=[\w.-]+&after=\d+", path), path

    with EventStream(second_web + path) as stream:
        # Through A, then seen on B. Once B has sent this, its subscription and replay are done:
        # what follows can only reach it live, through B's dispatcher.
        second = f"Second message ({visitor.email})"
        visitor.say(second)
        stream.wait_for(second)

        answer = f"Agent answer via A ({visitor.email})"
        cid = conversation_id(owner, visitor)
        owner.http.post_form(f"/dashboard/conversations/{cid}",
                             f"/dashboard/conversations/{cid}/messages", body=answer)
        assert owner.http.last.status_code == 200, owner.http.last.text[:2000]
        event = stream.wait_for(answer)
        assert event.event == "update" and event.id.isdigit(), event
        assert 'class="w-msg w-msg-agent"' in event.text

        # A later event closes the window in which a duplicate could still come.
        third = f"Thanks! ({visitor.email})"
        visitor.say(third)
        stream.wait_for(third)
    assert stream.count(answer) == 1
    assert stream.count(second) == 1
    ids = [int(e.id) for e in stream.seen if e.id]
    assert ids == sorted(set(ids)), ids  # increasing: nothing twice, nothing out of order


def test_visitor_message_on_process_b_reaches_the_dashboard_stream_on_process_a(
        live_server, second_web, owner, make_visitor):
    cookies = owner.http.http.cookies  # the session works on every process (one secret key)
    path = dashboard_stream_path(owner)
    with EventStream(live_server.url + path, cookies=cookies) as stream:
        stream.wait_for("Live updates: connected")  # sent once subscribed, before any replay
        visitor = make_visitor(second_web, owner.site_key)
        text = f"Written on B ({visitor.email})"
        visitor.say(text)
        event = stream.wait_for(text)
        assert event.event == "update", event
        assert 'hx-swap-oob="afterbegin:#inbox-rows"' in event.text  # a new inbox row
        later = f"And again ({visitor.email})"
        visitor.say(later)
        stream.wait_for(later)
    assert sum(text in e.text and "msg-visitor" in e.text for e in stream.seen) == 1

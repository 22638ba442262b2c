"""A small HTTP/1.1 client on asyncio streams, light enough for thousands of connections:
keep-alive requests (Content-Length or chunked bodies) and Server-Sent Event streams.

Loopback only: every connection goes to 127.0.0.1.
"""

import asyncio
import time
from urllib.parse import urlencode

HOST = "127.0.0.1"
IDLE_REUSE = 3.0  # seconds: uvicorn closes idle keep-alive connections after 5 s


class HTTPError(Exception):
    pass


class Response:
    __slots__ = ("status", "headers", "cookies", "body")

    def __init__(self, status: int, headers: dict, cookies: dict, body: bytes):
        self.status, self.headers, self.cookies, self.body = status, headers, cookies, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def read_head(reader: asyncio.StreamReader):
    """(status, headers with lower-case names, cookies set) of a response."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HTTPError(f"bad status line {lines[0]!r}")
    headers, cookies = {}, {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            key, _, rest = value.partition("=")
            cookies[key.strip()] = rest.split(";", 1)[0]
        else:
            headers[name] = value
    return int(parts[1]), headers, cookies


async def read_body(reader: asyncio.StreamReader, headers: dict, method: str, status: int) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return bytes(body)
            body += await reader.readexactly(size + 2)
            del body[-2:]
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()  # until the server closes


def form(fields: dict) -> bytes:
    return urlencode(fields).encode()


class Connection:
    """One keep-alive connection; reconnects when it has been idle or the server closed it."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None
        self.last_used = 0.0

    async def _connect(self):
        self.close()
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=2**20)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict | None = None,
                      body: bytes | None = None, timeout: float = 10.0, on_sent=None) -> Response:
        """Send one request and read the whole response. on_sent(t_ns) is called just before
        the request is written (for latency measurements)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
            if not any(k.lower() == "content-type" for k in (headers or {})):
                lines.append("Content-Type: application/x-www-form-urlencoded")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        # One deadline for the whole exchange (cheaper than a wait_for per step).
        async with asyncio.timeout(timeout):
            if self.writer is None or self.writer.is_closing() or self.reader.at_eof() \
                    or time.monotonic() - self.last_used > IDLE_REUSE:
                await self._connect()
            if on_sent is not None:
                on_sent(time.perf_counter_ns())
            try:
                self.writer.write(data)
                status, head, cookies = await read_head(self.reader)
                payload = await read_body(self.reader, head, method, status)
            except BaseException:
                self.close()
                raise
        if head.get("connection", "").lower() == "close":
            self.close()
        self.last_used = time.monotonic()
        return Response(status, head, cookies, payload)


class Event:
    __slots__ = ("id", "name", "data")

    def __init__(self, id, name, data):
        self.id, self.name, self.data = id, name, data


class SSEStream:
    """One Server-Sent Events stream. `on_event(stream, event, t_ns)` is called for each event,
    t_ns being perf_counter_ns() when the bytes holding it were read."""

    def __init__(self, port: int, path: str, headers: dict | None = None, on_event=None, tag=None):
        self.port, self.path, self.headers, self.on_event, self.tag = port, path, headers or {}, on_event, tag
        self.reader = self.writer = None
        self.status = None
        self.task = None
        self.events = 0
        self.ended = False

    async def open(self, timeout: float = 20.0) -> int:
        """Connect, send the request and read the response head; returns the status."""
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, self.port, limit=2**20), timeout)
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {HOST}:{self.port}",
                 "Accept: text/event-stream", "Cache-Control: no-cache"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.status, self.head, _ = await asyncio.wait_for(read_head(self.reader), timeout)
        if self.status != 200:
            self.close()
        return self.status

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self.task

    async def _run(self):
        chunked = self.head.get("transfer-encoding", "").lower() == "chunked"
        raw = bytearray()  # transport bytes not yet de-chunked
        text = b""  # de-chunked event-stream bytes not yet parsed
        remaining = 0  # bytes left in the current chunk
        state = "size"  # size | data | crlf
        reader, on_event = self.reader, self.on_event
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                t_ns = time.perf_counter_ns()
                if chunked:
                    raw += data
                    out = bytearray()
                    while raw:
                        if state == "size":
                            i = raw.find(b"\r\n")
                            if i < 0:
                                break
                            remaining = int(bytes(raw[:i]).split(b";")[0], 16)
                            del raw[:i + 2]
                            if remaining == 0:
                                self.ended = True
                                raw.clear()
                                break
                            state = "data"
                        elif state == "data":
                            n = min(remaining, len(raw))
                            out += raw[:n]
                            del raw[:n]
                            remaining -= n
                            if remaining == 0:
                                state = "crlf"
                        else:
                            if len(raw) < 2:
                                break
                            del raw[:2]
                            state = "size"
                    text += bytes(out)
                else:
                    text += data
                if b"\r" in text:
                    text = text.replace(b"\r\n", b"\n")
                while True:
                    end = text.find(b"\n\n")
                    if end < 0:
                        break
                    block, text = text[:end], text[end + 2:]
                    ev_id = name = None
                    data_lines = []
                    for line in block.split(b"\n"):
                        if line.startswith(b"data:"):
                            data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
                        elif line.startswith(b"id:"):
                            ev_id = line[3:].strip().decode()
                        elif line.startswith(b"event:"):
                            name = line[6:].strip().decode()
                    if not data_lines and ev_id is None:
                        continue  # a comment (ping)
                    self.events += 1
                    if on_event is not None:
                        on_event(self, Event(ev_id, name or "message", b"\n".join(data_lines)), t_ns)
                if self.ended:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended = True

    def close(self):
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def open_streams(streams: list, concurrency: int = 100, timeout: float = 30.0,
                       deadline: float = 120.0) -> dict:
    """Open many streams, at most `concurrency` handshakes at a time, all within `deadline`
    seconds (the rest are given up and closed); returns {status: count}."""
    gate = asyncio.Semaphore(concurrency)
    counts: dict = {}

    async def one(stream):
        async with gate:
            try:
                status = await stream.open(timeout)
            except (TimeoutError, OSError, HTTPError, asyncio.IncompleteReadError) as exc:
                status = type(exc).__name__
                stream.close()
            counts[status] = counts.get(status, 0) + 1
            if status == 200:
                stream.start()

    tasks = [asyncio.ensure_future(one(s)) for s in streams]
    done, pending = await asyncio.wait(tasks, timeout=deadline)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
        counts["given up"] = len(pending)
        for s in streams:
            if s.task is None:
                s.close()
    return counts


async def close_streams(streams: list) -> None:
    for s in streams:
        s.close()
    tasks = [s.task for s in streams if s.task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=5)

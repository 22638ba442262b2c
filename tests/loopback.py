"""Real HTTP servers on loopback for the automation tests: a recorder that answers as told, a
fake CRM that keeps contacts in memory behind a bearer token, and a customer's endpoint."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Received:
    """One request as the server saw it."""

    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.method} {self.path}>"


class LoopbackServer:
    """A threaded http.server on 127.0.0.1 (or ::1) that records every request and answers
    with `self.answer(received) -> (status, headers, body bytes)`."""

    def __init__(self, host="127.0.0.1"):
        self.requests: list[Received] = []
        self.release = threading.Event()  # for handlers that wait (a server that never answers)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                got = Received(self.command, self.path, dict(self.headers.items()), body)
                outer.requests.append(got)
                status, headers, payload = outer.answer(got)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass  # keep the test output clean

        server_class = ThreadingHTTPServer
        if ":" in host:
            import socket

            class V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_class = V6
        self.httpd = server_class((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]

    def answer(self, received):
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    def url(self, path="/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def __enter__(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class Recorder(LoopbackServer):
    """Answers every request with the same status, headers and body."""

    def __init__(self, status=200, body=b'{"ok": true}', headers=None, host="127.0.0.1"):
        super().__init__(host)
        self.status, self.body = status, body
        self.headers = headers if headers is not None else {"Content-Type": "application/json"}

    def answer(self, received):
        return self.status, self.headers, self.body


class FakeCRM(LoopbackServer):
    """A CRM REST API: GET /contacts?email=, POST /contacts, PATCH /contacts/<id>; every call
    needs `Authorization: Bearer <token>`. Its search is fuzzy on purpose (substring, any case),
    as real ones often are, so the flow must match the e-mail exactly itself."""

    def __init__(self, token):
        super().__init__()
        self.token = token
        self.contacts: dict[int, dict] = {}
        self.next_id = 100

    def answer(self, received):
        if received.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"Content-Type": "application/json"}, b'{"error": "unauthorized"}'
        parts = urlsplit(received.path)
        if received.method == "GET" and parts.path == "/api/contacts":
            wanted = parse_qs(parts.query).get("email", [""])[0].lower()
            found = [c for c in self.contacts.values() if wanted in c["email"].lower()]
            return self._json(200, {"results": found})
        if received.method == "POST" and parts.path == "/api/contacts":
            contact = dict(received.json(), id=self.next_id)
            self.contacts[self.next_id] = contact
            self.next_id += 1
            return self._json(201, contact)
        if received.method == "PATCH" and parts.path.startswith("/api/contacts/"):
            contact = self.contacts.get(int(parts.path.rsplit("/", 1)[1]))
            if contact is None:
                return self._json(404, {"error": "no such contact"})
            contact.update(received.json())
            return self._json(200, contact)
        return self._json(404, {"error": "not found"})

    @staticmethod
    def _json(status, data):
        return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


class Endpoint:
    """A customer's endpoint for automations, started at once: records every request (with
    its arrival time) as a dict and answers `status` with `{}`. `stop()` when done."""

    def __init__(self, status=200):
        self.status = status
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"at": time.monotonic(), "method": self.command,
                                       "path": self.path, "headers": dict(self.headers),
                                       "body": body})
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

"""A real uvicorn serving an ASGI app on a loopback port, in a thread, lifespan included: for
tests that must go through the HTTP server (chunked bodies, Last-Event-ID, headers)."""

import socket
import threading

import uvicorn


class LiveServer:
    def __init__(self, root, **config):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        # proxy_headers off: only our layer (LUMNAR_TRUST_PROXY) may believe X-Forwarded-Proto.
        settings = dict(log_level="warning", proxy_headers=False, timeout_graceful_shutdown=5,
                        lifespan="on", ws="none")
        settings.update(config)
        self.server = uvicorn.Server(uvicorn.Config(root, **settings))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()

"""Bodies sent without a stated length (chunked) reach Flask whole, and under its size limit."""

from flask import has_request_context, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length


class UnstatedLengthInput:
    """wsgi.input of a body without Content-Length that answers 413 past the request's limit.

    werkzeug reads such a body only up to `request.max_content_length` and then stops
    without looking further: a longer form or JSON body would be cut short and read as if
    it were whole. So when a read reaches the limit, one more byte says whether the body
    goes on, and if it does the request is refused as too large."""

    def __init__(self, stream):
        self.stream = stream
        self.seen = 0

    def _count(self, data: bytes) -> bytes:
        self.seen += len(data)
        limit = request.max_content_length if has_request_context() else None
        if data and limit is not None and self.seen >= limit:
            if self.seen > limit or self.stream.read(1):
                raise RequestEntityTooLarge()
        return data

    def read(self, size=-1) -> bytes:
        return self._count(self.stream.read(size))

    def readline(self, size=-1) -> bytes:
        return self._count(self.stream.readline(size))

    def __iter__(self):
        while line := self.readline():
            yield line


class TerminatedInput:
    """Lets Flask read a body sent without Content-Length, as it reads one with a length.

    Without a length, werkzeug gives Flask an empty body unless the server says that
    wsgi.input ends where the body ends (`wsgi.input_terminated`). a2wsgi's input does end
    there (uvicorn has undone the chunked framing, and a2wsgi stops at the last body
    message of the request) but does not say so. A stated length keeps werkzeug's own
    handling of it."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if get_content_length(environ) is None:
            environ["wsgi.input_terminated"] = True
            environ["wsgi.input"] = UnstatedLengthInput(environ["wsgi.input"])
        return self.wsgi_app(environ, start_response)

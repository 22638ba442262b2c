"""What every task runs inside: the Flask app context and an open database connection."""

from contextlib import contextmanager

from flask import current_app, has_app_context

from app.db import connection, database, dialect, thread_connection
from jobs import WORKER_BUSY_SECONDS, huey

# How long a task's statements wait for a lock another process holds, in each dialect.
PATIENCE = {"sqlite": f"PRAGMA busy_timeout = {WORKER_BUSY_SECONDS * 1000}",
            "postgres": f"SET lock_timeout = '{WORKER_BUSY_SECONDS}s'"}


@contextmanager
def task_context():
    if has_app_context():  # immediate mode: already inside a request or a test
        with connection():
            yield current_app
        return
    app = huey.flask_app
    # A consumer's worker threads live as long as it does: each keeps its connection, as web
    # requests do, instead of opening one (pragmas, schema, cold cache) for every task.
    # A request context at the public address too: e-mails built in a task link to pages
    # with url_for (a security alert's settings link, a billing e-mail), as in a request.
    with app.test_request_context("/", base_url=app.config["BASE_URL"]), thread_connection():
        # Set on every task (it costs microseconds), so that a connection opened again after
        # an error is as patient as the first.
        database.execute_sql(PATIENCE[dialect()])
        yield app


"""What every task runs inside: the Flask app context and an open database connection."""

import os
import threading
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


LOWEST_PRIORITY = 19  # nice


def at_low_priority(fn, *args):
    """fn(*args) in a task context, in a thread of its own at the lowest CPU priority: a long
    clean-up (the retention purge) then takes the CPU the web process leaves, instead of
    sharing it equally while chat waits (measured by tests/bench/bench_privacy.py: the purge
    used half a core). On Linux a thread has its own nice value; the worker's own threads keep
    theirs (raising a priority again needs a privilege the worker lacks). In immediate mode
    (inside a request or a test) it runs here, as any task does."""
    if has_app_context():
        with task_context():
            return fn(*args)
    outcome = {}

    def run():
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
        except (OSError, AttributeError):  # not Linux: at the worker's own priority
            pass
        try:
            with task_context():
                outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the task's own thread, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="low-priority-task", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


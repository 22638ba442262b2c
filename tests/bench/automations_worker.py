"""The automation benchmark's consumer entry: Lumnar's own consumer (jobs.main) plus a no-op
flow and a bare no-op Huey task, so both are measured through the same consumer set-up.

`huey_consumer tests.bench.automations_worker.huey`; LUMNAR_DATA_DIR names the database.
"""

from app.automations.flows.registry import Flow, register
from jobs.main import app, huey  # noqa: F401  (the consumer reads .huey; the app is built there)


def _nothing(ctx) -> None:
    """Does nothing: what is left is the cost of running a flow at all (claim, context, log)."""


NOOP = register(Flow(name="bench_noop", title="No-op (benchmark)", description="Does nothing.",
                     fields=(), run=_nothing))


@huey.task()
def bare_noop(i: int) -> None:
    """The floor: a Huey task that does nothing."""

"""The services' one door to background work: they name a task, the jobs package runs it.

A service says what should happen later and with which ids (`enqueue("mail.deliver",
email_id)`); the jobs package (the Huey tasks, which call the services) tells this module,
when it is imported, which task answers to each name (`@background.task("mail.deliver")`)
and which queue holds them (`install`). So the arrows point one way, jobs → services: no
service imports jobs, and none needs a late import to dodge a circle.
"""

from collections.abc import Callable, Iterable

_tasks: dict[str, Callable] = {}
_queue = None  # the Huey instance, once jobs.init_app has run


class UnknownTask(LookupError):
    pass


def task(name: str):
    """Decorator for a Huey task: services enqueue it as `name`."""

    def register(huey_task):
        if _tasks.get(name, huey_task) is not huey_task:
            raise ValueError(f"two background tasks are named {name!r}")
        _tasks[name] = huey_task
        return huey_task

    return register


def install(queue) -> None:
    """The queue the tasks go to (jobs.init_app): it answers `immediate`, `enqueue_many` and
    `answers`."""
    global _queue
    _queue = queue


def names() -> set[str]:
    return set(_tasks)


def _task(name: str):
    try:
        return _tasks[name]
    except KeyError:
        raise UnknownTask(f"no background task is named {name!r}: is the jobs package "
                          "imported (jobs.init_app)?") from None


def enqueue(name: str, *args, delay: float | None = None) -> None:
    """Run task `name` with `args` in the worker, after `delay` seconds when given. Call it
    once the rows it reads are committed: the worker reads them from its own connection."""
    huey_task = _task(name)
    if delay:
        huey_task.schedule(args, delay=delay)
    else:
        huey_task(*args)


def enqueue_many(name: str, arg_tuples: Iterable[tuple]) -> None:
    """Task `name` once per tuple of arguments, queued together when the queue can."""
    _queue.enqueue_many(_task(name), list(arg_tuples))


def runs_at_once() -> bool:
    """Whether a task has already run when enqueue returns (immediate mode: the tests)."""
    return _queue is None or _queue.immediate


def queue_answers() -> bool:
    """Whether the queue's storage answers (the health check)."""
    return _queue is not None and _queue.answers()

"""Long clean-ups run in a thread at the lowest CPU priority (app.background.at_lowest_priority),
so that they take only the CPU the web process leaves; the caller waits, gets the result or the
exception, and keeps its own priority."""

import os
import threading

import pytest

from app.background import LOWEST_PRIORITY, at_lowest_priority


def own_priority() -> tuple[int, int]:
    return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_work_runs_in_another_thread_at_the_lowest_priority_and_its_result_comes_back():
    caller, caller_priority = own_priority()
    worker, worker_priority = at_lowest_priority(own_priority)
    assert worker != caller
    assert worker_priority == LOWEST_PRIORITY
    assert own_priority() == (caller, caller_priority)  # the caller is never lowered


def test_the_works_exception_is_raised_in_the_caller():
    def fails():
        raise ValueError("the purge met a problem")

    with pytest.raises(ValueError, match="the purge met a problem"):
        at_lowest_priority(fails)

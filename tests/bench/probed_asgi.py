"""The measured app with two probes around it, for the benchmark only (the product is unchanged).

`uvicorn tests.bench.probed_asgi:app` serves the ASGI app named by LUMNAR_BENCH_TARGET
(default `app.asgi:app`) and adds, in the same process and on the same event loop:
- an event-loop lag probe: a task that sleeps 10 ms in a loop and records how late it wakes;
- a garbage-collection probe: gc.callbacks timing every collection (longest pause, count);
and GET /__bench/probe answering both as JSON. `?reset=1` starts a new window; `?run=0`
pauses the lag task (its 100 wake-ups a second would otherwise show in the idle CPU figure),
`?run=1` resumes it.
"""

import asyncio
import gc
import importlib
import json
import os
import time

TICK = 0.010  # seconds the probe sleeps; lag = how much later than that it wakes


class Probe:
    def __init__(self):
        self.lags: list[float] = []  # ms late, per wake-up, since the last reset
        self.gc_pauses: list[float] = []  # ms, per collection, since the last reset
        self.gc_by_gen = [0, 0, 0]
        self._gc_started = 0.0
        self.running = asyncio.Event()
        self.task = None
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase, info):
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc_pauses.append((time.perf_counter() - self._gc_started) * 1000)
            self.gc_by_gen[info.get("generation", 2)] += 1
            self._gc_started = 0.0

    async def _loop(self):
        while True:
            await self.running.wait()
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            self.lags.append(max(0.0, (time.perf_counter() - t0 - TICK) * 1000))

    def ensure_started(self):
        if self.task is None:
            self.running.set()
            self.task = asyncio.get_running_loop().create_task(self._loop())

    def snapshot(self) -> dict:
        lags = sorted(self.lags)

        def q(p):
            return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else None

        return {"samples": len(lags), "lag_p50": q(.5), "lag_p99": q(.99),
                "lag_max": lags[-1] if lags else None, "gc_count": len(self.gc_pauses),
                "gc_by_generation": list(self.gc_by_gen),
                "gc_max_pause": max(self.gc_pauses, default=None)}

    def reset(self):
        self.lags.clear()
        self.gc_pauses.clear()
        self.gc_by_gen = [0, 0, 0]


def _target():
    module, _, name = os.environ.get("LUMNAR_BENCH_TARGET", "app.asgi:app").partition(":")
    return getattr(importlib.import_module(module), name)


_inner = None
_probe = None


async def app(scope, receive, send):
    global _inner, _probe
    if _inner is None:
        _inner = _target()
        _probe = Probe()
    _probe.ensure_started()
    if scope["type"] == "http" and scope["path"] == "/__bench/probe":
        query = scope.get("query_string", b"").decode()
        body = json.dumps(_probe.snapshot()).encode()
        if "reset=1" in query:
            _probe.reset()
        if "run=0" in query:
            _probe.running.clear()
        elif "run=1" in query:
            _probe.running.set()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await _inner(scope, receive, send)

"""The chat benchmark cannot say "met" when the load fell short: messages never sent count as
not sent and lost, refused answers are counted and kept out of the latency percentiles, and a
goal against a lost, missing or infinite figure is missed. (Logic only: no timing figures.)"""

import asyncio
import time

from tests.bench.chat_client import INF, Client, Outcomes
from tests.bench.chat_report import verdict
from tests.chat_fixtures import run_async


def part(samples, window=1.0):
    return {"wall0": 0.0, "window": window, "samples": samples, "duplicates": 0,
            "answered": {"v2a": [], "a2v": []}}


def test_messages_never_sent_count_as_lost_and_the_step_is_not_sustained():
    samples = [("v2a", 0.0, 1.0, "ok"), ("a2v", 0.1, 1.0, "ok"), ("v2a", 0.2, INF, "unsent")]
    o = Outcomes(3, 1, [part(samples)])
    assert (o.sent, o.not_sent, o.scheduled, o.lost) == (2, 1, 3, 1)
    assert o.p(.99) == 1.0  # percentiles over what was accepted
    assert not o.sustained()


def test_refused_answers_are_counted_kept_out_of_percentiles_and_lost():
    samples = [("v2a", 0.0, 2.0, "ok"), ("a2v", 0.1, INF, 500), ("a2v", 0.2, INF, "ConnectionRefusedError")]
    o = Outcomes(3, 1, [part(samples)])
    assert o.errors == 2 and o.statuses == {500: 1, "ConnectionRefusedError": 1}
    assert o.all == [2.0] and o.lost == 2
    assert not o.sustained()


def test_an_accepted_message_never_delivered_is_an_infinite_latency():
    o = Outcomes(2, 1, [part([("v2a", 0.0, 1.0, "ok"), ("a2v", 0.5, INF, "ok")])])
    assert o.p(.99) == INF and o.undelivered == 1 and o.lost == 1
    assert not o.sustained()


def test_a_clean_fast_run_is_sustained():
    o = Outcomes(2, 1, [part([("v2a", 0.0, 1.0, "ok"), ("a2v", 0.5, 1.0, "ok")], window=1.0)])
    assert o.lost == 0 and o.sustained()


def test_a_window_of_a_run_keeps_only_the_messages_due_in_it():
    samples = [("v2a", 0.5, INF, "ConnectionRefusedError"), ("a2v", 2.0, 1.0, "ok"), ("v2a", 9.0, 1.0, "ok")]
    o = Outcomes(1, 5, [part(samples)], since=1.0, until=6.0)
    assert (o.sent, o.errors, o.lost) == (1, 0, 0)


def test_a_goal_against_a_lost_missing_or_infinite_figure_is_missed():
    for value in (INF, None, float("nan"), "< 10 msg/s"):
        assert verdict(value, "≤", 3).startswith("MISSED")
        assert verdict(value, "≥", 1500).startswith("MISSED")
    assert verdict(1.0, "≤", 3, clean=False).startswith("MISSED")
    assert verdict(1.0, "≤", 3) == "met"
    assert verdict(1600.0, "≥", 1500) == "met"
    assert verdict(1400.0, "≥", 1500) == "MISSED"


def test_the_load_client_checks_every_answer_and_counts_what_it_could_not_send():
    """Against a loopback server that answers every POST 500 after a pause, the real client
    counts each refusal as an error, times none of them, and counts what found no free
    connection (64 per side) as not sent."""

    async def scenario():
        async def handle(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    await asyncio.sleep(0.3)
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Client(port, 0, {"cookie": "c", "csrf": "t", "after": 0})
        loaders = [{"conversation": c, "token": "t", "path": "/unused"} for c in range(1, 11)]
        try:
            return await client.drive(1000, 0.2, time.time(), loaders)
        finally:
            await client.shutdown()
            server.close()
            await server.wait_closed()

    o = Outcomes(1000, 0.2, [run_async(scenario())])
    assert o.scheduled == 200
    assert o.sent == 128 and o.not_sent == 72  # 64 connections each way, all busy for 0.3 s
    assert o.errors == 128 and set(o.statuses) == {500}
    assert o.all == [] and o.lost == 200
    assert not o.sustained()
    assert verdict(o.p(.99), "≤", 100, clean=o.lost == 0).startswith("MISSED")


def test_a_goal_that_holds_below_the_goals_scale_is_not_plainly_met():
    from tests.bench import chat_report

    chat_report.below_scale = "quick run"
    try:
        assert verdict(1.0, "≤", 3) == "met only at this smaller scale (quick run)"
        assert verdict(9.0, "≤", 3) == "MISSED"
    finally:
        chat_report.below_scale = None

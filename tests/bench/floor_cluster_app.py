"""The cluster benchmark's floor: the bare stack doing Lumnar's cross-process hop, no Lumnar code.

Several copies run under uvicorn (uvloop, httptools, one process each on its own port, as the
benchmark runs Lumnar), on the same PostgreSQL and Redis. Each serves:

- POST /post?c=<conversation>&actor=visitor|agent (form field `body`): one INSERT … RETURNING id
  (psycopg 3, a pool, autocommit: the statement is the transaction); once committed, the row's
  SSE bytes go to this process's own streams from memory (as Lumnar publishes its own writes)
  and "<process tag> <id>" is PUBLISHed on Redis;
- GET /sse/agent (every row) and GET /sse/visitor?c=<conversation> (that conversation's rows);
- a subscriber task: another process's wake-up names a row id; the ids that arrived meanwhile
  are read in one SELECT (the table is the truth, as in Lumnar, where a wake-up carries no
  event: a lost one costs time, not the message) and pushed to this process's streams.

What it leaves out, on purpose, is everything Lumnar does besides the hop: sessions, CSRF,
visitor tokens, the conversation's row, per-workspace event numbers, rendering from templates,
replay after a reconnect, presence, heartbeats and permission re-checks.

Settings: FLOOR_DATABASE_URL (a database holding the table `bench_floor_event`, made by the
benchmark), FLOOR_REDIS_URL, FLOOR_POOL_SIZE (default 10, Lumnar's default pool size).
"""

import asyncio
import contextlib
import html
import os
import secrets
from urllib.parse import parse_qs

import psycopg_pool
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

CHANNEL = "bench-floor:events"
TABLE = "bench_floor_event"
TAG = secrets.token_hex(6).encode()
INSERT = f"INSERT INTO {TABLE} (conversation_id, actor, body) VALUES (%s, %s, %s) RETURNING id"
READ = f"SELECT id, conversation_id, body FROM {TABLE} WHERE id = ANY(%s) ORDER BY id"

agents: set = set()  # queues of agent streams
visitors: dict = {}  # conversation id -> queues of its visitor streams
state: dict = {}


def sse(row_id: int, body: str) -> bytes:
    return (f'id: {row_id}\r\nevent: update\r\ndata: <p class="body">{html.escape(body)}</p>'
            "\r\n\r\n").encode()


def push(conversation_id: int, data: bytes) -> None:
    for q in agents:
        q.put_nowait(data)
    for q in visitors.get(conversation_id, ()):
        q.put_nowait(data)


async def post(request):
    try:
        conversation_id = int(request.query_params["c"])
        actor = request.query_params.get("actor", "visitor")
        body = parse_qs((await request.body()).decode()).get("body", [""])[0]
    except (KeyError, ValueError):
        return PlainTextResponse("bad request", status_code=400)
    async with state["pool"].connection() as conn:
        cursor = await conn.execute(INSERT, (conversation_id, actor, body))
        (row_id,) = await cursor.fetchone()
    push(conversation_id, sse(row_id, body))
    await state["redis"].publish(CHANNEL, TAG + b" " + str(row_id).encode())
    return PlainTextResponse("ok")


def stream(group: set):
    q = asyncio.Queue()
    group.add(q)

    async def events():
        try:
            yield b": open\r\n\r\n"
            while True:
                yield await q.get()
        finally:
            group.discard(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def agent_stream(request):
    return stream(agents)


async def visitor_stream(request):
    try:
        conversation_id = int(request.query_params["c"])
    except (KeyError, ValueError):
        return PlainTextResponse("bad request", status_code=400)
    return stream(visitors.setdefault(conversation_id, set()))


async def healthz(request):
    ready = state.get("subscribed") is not None and state["subscribed"].is_set()
    return PlainTextResponse("ok" if ready else "starting", status_code=200 if ready else 503)


async def listen() -> None:
    """Wake-ups of the other processes: ids gathered while a read runs are read together."""
    client = aioredis.Redis.from_url(os.environ["FLOOR_REDIS_URL"])
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL)
    state["subscribed"].set()
    waiting: list = []
    woken = asyncio.Event()

    async def reader():
        while True:
            await woken.wait()
            woken.clear()
            ids, waiting[:] = list(waiting), []
            try:
                async with state["pool"].connection() as conn:
                    rows = await (await conn.execute(READ, (ids,))).fetchall()
            except Exception as exc:  # shows in the benchmark as messages lost
                print(f"floor: read of {len(ids)} rows failed: {exc!r}", flush=True)
                continue
            for row_id, conversation_id, body in rows:
                push(conversation_id, sse(row_id, body))

    task = asyncio.create_task(reader())
    try:
        async for message in pubsub.listen():
            tag, _, row_id = message["data"].partition(b" ")
            if tag != TAG:
                waiting.append(int(row_id))
                woken.set()
    finally:
        task.cancel()
        await client.aclose()


@contextlib.asynccontextmanager
async def lifespan(app):
    size = int(os.environ.get("FLOOR_POOL_SIZE", "10"))
    state["pool"] = psycopg_pool.AsyncConnectionPool(
        os.environ["FLOOR_DATABASE_URL"], min_size=size, max_size=size,
        kwargs={"autocommit": True}, open=False)
    await state["pool"].open(wait=True)
    state["redis"] = aioredis.Redis.from_url(os.environ["FLOOR_REDIS_URL"])
    state["subscribed"] = asyncio.Event()
    listener = asyncio.create_task(listen())
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await state["redis"].aclose()
        await state["pool"].close()


app = Starlette(routes=[Route("/post", post, methods=["POST"]), Route("/sse/agent", agent_stream),
                        Route("/sse/visitor", visitor_stream), Route("/healthz", healthz)],
                lifespan=lifespan)

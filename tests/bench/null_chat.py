"""A chat server that does nothing but pass messages along, in memory, on Lumnar's own URLs.

Not a product floor: it shows how fast the load client (on the same machine) can drive a chat
at all, so that a rate figure above it is known to measure the machine, not Lumnar. A widget
message becomes one event on every dashboard stream; an agent reply, one event on the
conversation's visitor streams (the conversation id is read from the ticket, unverified).
"""

import asyncio
import itertools
from urllib.parse import parse_qs

from itsdangerous import URLSafeTimedSerializer
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

_ids = itertools.count(1)
_agents: set = set()
_visitors: dict = {}


def _publish(queues, html: str) -> None:
    event_id = next(_ids)
    for q in list(queues):
        q.put_nowait((event_id, html))


def _stream(group: set):
    queue: asyncio.Queue = asyncio.Queue()
    group.add(queue)

    async def events():
        try:
            while True:
                event_id, html = await queue.get()
                yield {"event": "update", "id": str(event_id), "data": html}
        finally:
            group.discard(queue)

    return EventSourceResponse(events(), ping=15)


async def _form(request) -> dict:
    return {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}


async def dashboard_stream(request):
    return _stream(_agents)


async def visitor_stream(request):
    _, data = URLSafeTimedSerializer("unverified").loads_unsafe(request.query_params.get("ticket", ""))
    return _stream(_visitors.setdefault(int(data["c"]), set()))


async def widget_message(request):
    body = (await _form(request)).get("body", "")
    _publish(_agents, f'<li class="msg"><div class="body">{body}</div></li>')
    return PlainTextResponse("ok")


async def agent_reply(request):
    body = (await _form(request)).get("body", "")
    _publish(_visitors.get(request.path_params["cid"], ()),
             f'<li class="w-msg"><div class="w-body">{body}</div></li>')
    return PlainTextResponse("ok")


async def healthz(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[
    Route("/healthz", healthz),
    Route("/sse/dashboard", dashboard_stream),
    Route("/sse/visitor", visitor_stream),
    Route("/widget/{key}/messages", widget_message, methods=["POST"]),
    Route("/dashboard/conversations/{cid:int}/messages", agent_reply, methods=["POST"]),
])

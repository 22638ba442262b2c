"""The chat's event log: every event numbered within its workspace, in commit order.

Why a number per workspace and not the row id: PostgreSQL hands ids out at insert, and two
transactions may commit in the other order (A takes id 1, B takes id 2 and commits first, a
stream moves past 2, then 1 appears behind it and is never read: a lost event). The number
here comes from the workspace's counter row, bumped as the transaction's last statement: the
row stays locked until that transaction commits, so a second writer of the same workspace
waits and takes the next number only once the first is visible. A rolled back transaction
gives its numbers back, so they have no gaps: a stream can tell a missing event from a quiet
workspace. SQLite's write lock already orders every commit; the same statements run there.

Inside the chat writer's batch (app/chat/writer.py) events are numbered and inserted by the
batch itself, all at once right before its commit (record()); elsewhere by new(), in the
caller's transaction.
"""

from app.chat import live
from app.db import database, sql, utcnow

# One statement per workspace and transaction: the counter's row is created on first use.
NEXT = ('INSERT INTO "event_counter" ("workspace_id", "seq") VALUES (?, ?) '
        'ON CONFLICT ("workspace_id") DO UPDATE SET "seq" = "event_counter"."seq" + "excluded"."seq" '
        'RETURNING "seq"')
COLUMNS = '"workspace_id", "conversation_id", "seq", "kind", "ref_id", "actor", "created_at"'
ROW = "(?, ?, ?, ?, ?, ?, ?)"
ROWS_PER_INSERT = 100  # 700 bound values: well under either engine's limit

def new(workspace_id: int, conversation_id: int, kind: str, ref_id: int = 0, actor: str = "",
        message=None, conversation=None) -> "live.Written":
    """An event of the write in progress. Numbered and stored now, in the caller's
    transaction (its own when there is none), or, inside the chat writer's batch, by the
    batch right before its commit: the caller hands it to `published()` once its own
    transaction is through, and only events so handed over are stored."""
    event = live.Written(None, workspace_id, conversation_id, kind, ref_id, actor, message,
                         conversation)
    if not live.batching():
        if database.in_transaction():
            record([event])
        else:
            with database.atomic():
                record([event])
    return event


def record(written: list, tell: bool = True) -> None:
    """Number `written` (live.Written, in the order they happened) within their workspaces
    and insert them, in the caller's transaction: one counter statement per workspace, then
    the rows. Call it last before the commit, so the counter's row is held for the shortest
    time. `tell`: other processes hear of them at this thread's next live.notify() or
    live.publish() (the chat writer tells them itself)."""
    by_workspace = {}
    for event in written:
        by_workspace.setdefault(event.workspace_id, []).append(event)
    for workspace_id, group in by_workspace.items():
        (last,) = database.execute_sql(sql(NEXT), (workspace_id, len(group))).fetchone()
        for offset, event in enumerate(group, start=last - len(group) + 1):
            event.seq = offset
    now = str(utcnow())
    for start in range(0, len(written), ROWS_PER_INSERT):
        chunk = written[start:start + ROWS_PER_INSERT]
        values = []
        for event in chunk:
            values += (event.workspace_id, event.conversation_id, event.seq, event.kind,
                       event.ref_id or 0, event.actor or "", now)
        database.execute_sql(sql(_insert(len(chunk))), values)
    if tell:
        for event in written:
            live.told(event.workspace_id, event.seq)


_INSERTS = {}


def _insert(rows: int) -> str:
    text = _INSERTS.get(rows)
    if text is None:
        text = _INSERTS[rows] = (f'INSERT INTO "chat_event" ({COLUMNS}) VALUES '
                                 + ", ".join([ROW] * rows))
    return text

"""What the reports read: per conversation, the few figures its tables need, kept up to date
from the chat's numbered event log (app/chat/events.py) instead of worked out again from
every message at each view, which took seconds for a busy workspace's month.

Rows go with their conversation (retention, deletions: ON DELETE CASCADE) and hold nothing a
conversation and its messages do not: they are figures derived from them."""

from peewee import SQL, BigIntegerField, ForeignKeyField, IntegerField, TextField

from app.accounts.models import Workspace
from app.chat.models import Conversation
from app.db import BaseModel


class ConversationFact(BaseModel):
    conversation = ForeignKeyField(Conversation, primary_key=True, on_delete="CASCADE")
    workspace_id = IntegerField()
    site_id = IntegerField()
    started = BigIntegerField()  # when the conversation began, in seconds since 1970 (UTC)
    first_response = IntegerField(null=True)  # seconds to the first agent reply
    replier_id = IntegerField(null=True)  # who wrote it (None: no reply, or a former member)
    resolution = IntegerField(null=True)  # seconds from its start to its resolution, if resolved
    # The workspace's write that last put this row (ReportCursor.stamp; migration 26): the
    # page keeps each past day's figures between views, and a day whose facts changed since
    # shows it by a higher stamp (or by fewer rows, after a deletion).
    stamp = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])

    class Meta:
        table_name = "report_fact"
        # With the stamp in it, what the page asks of each day (how many, the highest stamp)
        # is read from the index alone.
        indexes = ((("workspace_id", "started", "stamp"), False),)


class ReportCursor(BaseModel):
    """How far a workspace's facts have read its chat events (its last `seq` folded in; -1
    while its facts are first being made), which members it had then (so that a member who
    left is soon nobody in the facts too), and the last stamp given to a write of its facts."""

    workspace = ForeignKeyField(Workspace, primary_key=True, on_delete="CASCADE")
    seq = IntegerField(default=0)
    member_ids = TextField(default="")  # "3,8,12"
    # One more for each write to the workspace's facts, taken inside that write's transaction:
    # the row stays locked until it commits, so stamps become visible in the order given.
    stamp = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])

    class Meta:
        table_name = "report_cursor"


REPORT_MODELS = [ConversationFact, ReportCursor]

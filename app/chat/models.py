"""Chat records. Every change a stream must show is also a ChatEvent row: the event's number in
its workspace (`seq`, see app/chat/events.py) is the SSE id, so a reconnecting browser asks for
exactly what it missed."""


from peewee import (
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from app.accounts.models import User, Workspace
from app.db import BaseModel, IdNeverReused, utcnow
from app.widget.models import Site, Visitor

# Ids that streams, "seen" marks and links compare must never be reused after a deletion,
# so these tables use AUTOINCREMENT (SQLite otherwise reuses the highest deleted rowid).


class Conversation(BaseModel):
    id = IdNeverReused()
    OPEN, RESOLVED = "open", "resolved"

    workspace = ForeignKeyField(Workspace, backref="conversations", on_delete="CASCADE")
    site = ForeignKeyField(Site, backref="conversations", on_delete="CASCADE")
    visitor = ForeignKeyField(Visitor, backref="conversations", on_delete="CASCADE")
    status = CharField(max_length=16, default=OPEN)
    assignee = ForeignKeyField(User, null=True, on_delete="SET NULL")
    started_page_url = CharField(max_length=2000, default="")
    created_at = DateTimeField(default=utcnow)
    last_activity_at = DateTimeField(default=utcnow)
    last_preview = CharField(max_length=160, default="")
    unread_count = IntegerField(default=0)  # visitor messages no agent has read yet
    agent_read_message_id = IntegerField(default=0)  # the visitor sees "Seen" up to here
    over_limit = BooleanField(default=False)
    away_notice_at = DateTimeField(null=True)  # last "a visitor wrote while you were away" e-mail
    away_pending = BooleanField(default=False)  # a batched notice is already scheduled

    class Meta:
        indexes = ((("workspace", "status", "last_activity_at"), False),
                   (("workspace", "last_activity_at"), False))

    @classmethod
    def in_workspace(cls, workspace_id):
        return cls.select().where(cls.workspace == workspace_id)


class Message(BaseModel):
    id = IdNeverReused()
    VISITOR, AGENT, SYSTEM = "visitor", "agent", "system"
    NOTE = "note"  # an agent's private note to the team (app/chat/notes.py): never the visitor's

    conversation = ForeignKeyField(Conversation, backref="messages", on_delete="CASCADE")
    workspace_id = IntegerField(index=True)  # copied from the conversation: scopes search
    sender = CharField(max_length=16)
    author = ForeignKeyField(User, null=True, on_delete="SET NULL")
    body = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    over_limit = BooleanField(default=False)
    # The id the sender's form carried (made fresh each time the form is rendered): a retry of
    # the same post finds the message it stored before instead of storing it again. '' = none.
    client_id = CharField(max_length=64, default="")
    replayed = False  # not a column: True on the message a retry found already stored

    class Meta:
        indexes = ((("conversation", "id"), False),)

    @classmethod
    def visible_to_visitor(cls):
        """The messages a conversation's visitor may see: all but the team's private notes.
        Every path that shows a conversation to its visitor (the widget, its stream, the
        transcript and reply e-mails) asks this, so a new kind of private message needs one
        change here."""
        return cls.sender != cls.NOTE

    @staticmethod
    def shown_to_visitor(sender: str) -> bool:
        """visible_to_visitor() for a sender already in hand (a stream's event, a message)."""
        return sender != Message.NOTE

    @classmethod
    def sent_before(cls, conversation_id: int, sender: str, client_id: str):
        """The message this sender already stored in this conversation under this client id
        (marked as replayed), or None."""
        if not client_id:
            return None
        found = cls.get_or_none((cls.conversation == conversation_id) & (cls.sender == sender)
                                & (cls.client_id == client_id))
        if found is not None:
            found.replayed = True
        return found


# One message per (conversation, sender, client id): the rule that makes a retry race-free.
# Scoped by sender too, so that one side's id can never stand for the other side's message.
Message.add_index(Message.index(Message.conversation, Message.sender, Message.client_id,
                                unique=True, where=(Message.client_id != ""),
                                name="message_client_id"))


class Attachment(BaseModel):
    id = IdNeverReused()
    message = ForeignKeyField(Message, backref="attachments", on_delete="CASCADE", unique=True)
    workspace_id = IntegerField(index=True)
    filename = CharField(max_length=255)
    content_type = CharField(max_length=100)
    size = IntegerField()
    data = BlobField()
    created_at = DateTimeField(default=utcnow)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class SavedReply(BaseModel):
    workspace = ForeignKeyField(Workspace, backref="saved_replies", on_delete="CASCADE")
    shortcut = CharField(max_length=40)
    body = TextField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "saved_reply"
        indexes = ((("workspace", "shortcut"), True),)


class ChatEvent(BaseModel):
    """What happened, in order. Streams replay rows after the browser's Last-Event-ID.

    Rows point at messages by id and hold no text of their own, so deleting a conversation
    deletes its words everywhere; only a bare "deleted" marker stays for the live views.

    `seq` numbers a workspace's events in the order they were committed (app/chat/events.py):
    the SSE id and every stream's cursor. The row id only identifies the row.
    """

    id = IdNeverReused()
    MESSAGE, TYPING, READ, STATUS, DELETED, VISITOR = (
        "message", "typing", "read", "status", "deleted", "visitor")

    workspace_id = IntegerField()
    conversation_id = IntegerField()
    seq = IntegerField()
    kind = CharField(max_length=16)
    ref_id = IntegerField(default=0)
    actor = CharField(max_length=16, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "chat_event"
        indexes = ((("workspace_id", "seq"), True), (("conversation_id", "seq"), False))


class EventCounter(BaseModel):
    """The last event number given in each workspace (app/chat/events.py)."""

    workspace_id = IntegerField(primary_key=True)
    seq = IntegerField()

    class Meta:
        table_name = "event_counter"


class Presence(BaseModel):
    """Open streams, so any process can tell whether agents are online or a visitor is here."""

    AGENT, VISITOR = "agent", "visitor"

    kind = CharField(max_length=16)
    workspace_id = IntegerField()
    subject_id = IntegerField()  # user id or conversation id
    stream_id = CharField(max_length=40, unique=True)
    seen_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("kind", "workspace_id", "seen_at"), False),)


CHAT_MODELS = [Site, Visitor, Conversation, Message, Attachment, SavedReply, ChatEvent, Presence,
               EventCounter]

# What migration 11 put in place of FTS_SQL's triggers: messages are indexed in steps after
# they are written (app.chat.service.index_new_messages), so a deleted or edited message
# changes the index only when it is in it already.
INDEXED = 'old.id <= (SELECT "indexed_to" FROM "search_index_state" WHERE "id" = 1)'
SEARCH_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS message_fts_ad AFTER DELETE ON message WHEN {INDEXED} BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_au AFTER UPDATE OF body ON message WHEN {INDEXED} "
    "BEGIN INSERT INTO message_fts(message_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO message_fts(rowid, body) VALUES (new.id, new.body); END",
]

# Search over message text: an FTS5 table with external content. As created by migration 2
# (kept so, as migrations run in order); migration 11 replaced the triggers (SEARCH_TRIGGERS).
# (The PostgreSQL counterpart is a tsvector column with a GIN index.)
FTS_SQL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5("
    "body, content='message', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS message_fts_ai AFTER INSERT ON message BEGIN "
    "INSERT INTO message_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_ad AFTER DELETE ON message BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_au AFTER UPDATE OF body ON message BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO message_fts(rowid, body) VALUES (new.id, new.body); END",
]

# PostgreSQL's search (FTS5's counterpart): a tsvector column the database keeps from the
# body itself (generated, so no trigger and no indexing step), with a GIN index. Its text
# search configuration is `simple` with accents folded, as FTS5's unicode61 tokenizer with
# remove_diacritics does here: no stemming on either engine, so both find the same messages.
PG_SEARCH_SQL = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    "DO $$ BEGIN CREATE TEXT SEARCH CONFIGURATION lumnar_search (COPY = simple); "
    "EXCEPTION WHEN unique_violation THEN NULL; END $$",
    "ALTER TEXT SEARCH CONFIGURATION lumnar_search "
    "ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple",
    'ALTER TABLE "message" ADD COLUMN IF NOT EXISTS "search" tsvector '
    "GENERATED ALWAYS AS (to_tsvector('lumnar_search', \"body\")) STORED",
    'CREATE INDEX IF NOT EXISTS "message_search" ON "message" USING GIN ("search")',
]

# Each search step of the migrations in each dialect's form (app/migrations.py): FTS5 and its
# upkeep on SQLite; on PostgreSQL the generated column needs none of the later steps.
SEARCH_SCHEMA = {
    "created": {"sqlite": FTS_SQL, "postgres": PG_SEARCH_SQL},
    "merges_in_background": {
        "sqlite": ["INSERT INTO message_fts(message_fts, rank) VALUES ('automerge', 0)"],
        "postgres": []},
    "indexed_in_steps": {
        "sqlite": [
            'CREATE TABLE IF NOT EXISTS "search_index_state" ('
            '"id" INTEGER PRIMARY KEY CHECK ("id" = 1), "indexed_to" INTEGER NOT NULL)',
            'INSERT OR IGNORE INTO "search_index_state" ("id", "indexed_to") '
            'SELECT 1, coalesce(max("id"), 0) FROM "message"',
            *(f"DROP TRIGGER IF EXISTS {name}"
              for name in ("message_fts_ai", "message_fts_ad", "message_fts_au")),
            *SEARCH_TRIGGERS],
        "postgres": []},
}

"""Chat rules as plain functions: views, streams and tasks all call these."""

import re
import time
import weakref
from datetime import timedelta

from flask import current_app
from peewee import JOIN, SQL, Case, IntegrityError, fn

from app import background
from app.accounts.models import Membership, User
from app.automations import service as automations
from app.billing import plans
from app.chat import events, files, labels, live, notices
from app.chat.models import (
    Attachment,
    ChatEvent,
    Conversation,
    EventCounter,
    Message,
    Presence,
    SavedReply,
)
from app.chat.text import MAX_CHARS, preview
from app.db import Prepared, database, dialect, sql, utcnow
from app.errors import RuleError
from app.privacy import erasure
from app.widget import limits
from app.widget import service as widget
from app.widget.models import Site, Visitor

PRESENCE_FRESH = timedelta(seconds=45)
INBOX_PAGE = 25


class ChatError(RuleError):
    """A chat rule said no."""


CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def client_id_from(value) -> str:
    """The id a chat form sent to make its post safe to retry, or '' when it sent none or not
    one we recognise (a short URL-safe token). '' still posts, without retry protection: a
    page rendered before forms carried the id must keep working."""
    return value if isinstance(value, str) and CLIENT_ID.fullmatch(value) else ""


CURRENT_CONVERSATION = Prepared(lambda visitor_id: Conversation.select().where(
    Conversation.visitor == visitor_id).order_by(Conversation.id.desc()).limit(1))


# Conversations with their visitor and site, by id (streams) and by id within a workspace
# (dashboard): asked on every chat event and reply, so built once (see app.db.Prepared).
CONVERSATION = Prepared(lambda conversation_id: (
    Conversation.select(Conversation, Visitor, Site).join(Visitor).switch(Conversation).join(Site)
    .where(Conversation.id == conversation_id).limit(1)))
WORKSPACE_CONVERSATION = Prepared(lambda conversation_id, workspace_id: (
    Conversation.select(Conversation, Visitor, Site).join(Visitor).switch(Conversation).join(Site)
    .where((Conversation.id == conversation_id) & (Conversation.workspace == workspace_id))
    .limit(1)), arity=2)
MESSAGE = Prepared(lambda message_id: Message.select().where(Message.id == message_id).limit(1))
# A literal 0, not a bound parameter: only then does SQLite know its partial index
# (unread_count > 0) covers the condition and skip reading the table rows.
UNREAD_TOTAL = Prepared(lambda workspace_id: Conversation.select(fn.COUNT(SQL("*"))).where(
    (Conversation.workspace == workspace_id) & (Conversation.unread_count > SQL("0"))))
AGENT_PRESENT = Prepared(lambda workspace_id, since: Presence.select(SQL("1")).where(
    (Presence.kind == Presence.AGENT) & (Presence.workspace_id == workspace_id)
    & (Presence.seen_at > since)).limit(1), arity=2)
VISITOR_PRESENT = Prepared(lambda conversation_id, since: Presence.select(SQL("1")).where(
    (Presence.kind == Presence.VISITOR) & (Presence.subject_id == conversation_id)
    & (Presence.seen_at > since)).limit(1), arity=2)


def current_conversation(visitor: Visitor) -> Conversation | None:
    return CURRENT_CONVERSATION.first(visitor.id)


def update_visitor(visitor: Visitor, name: str, email: str) -> None:
    new_email = email.strip().lower()[:254]
    left_email = bool(new_email) and new_email != visitor.email
    visitor.name, visitor.email = name.strip()[:120], new_email
    with database.atomic():
        visitor.save(only=[Visitor.name, Visitor.email])
        written = [events.new(conv.workspace_id, conv.id, ChatEvent.VISITOR)
                   for conv in Conversation.select(Conversation.id, Conversation.workspace).where(
                       Conversation.visitor == visitor)]
    widget.forget_visitor(visitor.id)  # a copy loaded before this save is not kept
    _publish(written)
    if left_email:
        site = Site.get_by_id(visitor.site_id)
        publish(site.workspace_id, "visitor_left_email", visitor, site,
                current_conversation(visitor))


# --- what automations hear -----------------------------------------------------------------------


# Asked on every visitor message, so a fixed statement: most workspaces have no automation
# listening, and then nothing more happens. (publish_chat_event checks everything again.)
HAS_CHAT_AUTOMATIONS = ('SELECT 1 FROM "automation" WHERE "workspace_id" = ? AND "trigger" = \'chat\' '
                        'AND "chat_event" = ? AND NOT "paused" LIMIT 1')


def publish(workspace_id: int, event: str, visitor: Visitor, site: Site,
            conversation: Conversation | None, text: str = "") -> None:
    """Hand a chat event to the workspace's automations, once the chat write has committed
    (live.after_commit). Whether any automation listens is asked at once (a read, and most
    workspaces have none): only then is anything left for after the commit.

    An automation problem never costs the chat anything: the visitor's words are already
    stored, so a failure here is logged, not raised."""
    try:
        listening = database.execute_sql(sql(HAS_CHAT_AUTOMATIONS), (workspace_id, event)).fetchone()
    except Exception:  # see above: logged, never the chat's failure
        current_app.logger.exception("chat event %s not handed to automations", event)
        return
    if not listening:
        return
    data = {
        "conversation_id": conversation.id if conversation else None,
        "visitor_name": visitor.name, "visitor_email": visitor.email,
        "visitor": {"name": visitor.name, "email": visitor.email},
        "text": text, "site": site.name, "site_name": site.name,
        "page_url": (conversation.started_page_url if conversation else "") or visitor.first_page_url,
    }
    live.after_commit(lambda: _to_automations(workspace_id, event, data))


def _to_automations(workspace_id: int, event: str, data: dict) -> None:
    try:
        automations.publish_chat_event(workspace_id, event, data)
    except Exception:  # see publish(): logged, never the chat's failure
        current_app.logger.exception("chat event %s not handed to automations", event)


# --- messages ------------------------------------------------------------------------------------


def check_body(body: str, has_file: bool) -> str:
    body = (body or "").replace("\r\n", "\n").strip()
    if not body and not has_file:
        raise ChatError("Write a message or attach a file.", field="body")
    if len(body) > MAX_CHARS:
        raise ChatError("Messages can be at most %(limit)s characters. This one has %(count)s.",
                        field="body", values={"limit": f"{MAX_CHARS:,}", "count": f"{len(body):,}"})
    return body


def _count_new_conversation(workspace_id: int) -> bool:
    """Count one more conversation this month for the workspace; True when it goes past its
    plan's limit (copied onto the workspace row when the plan changes: one statement reads
    and counts). Runs inside the first message's transaction, so the count and the
    conversation agree; later messages of the conversation add nothing."""
    month = utcnow().strftime("%Y-%m")
    used, limit = database.execute_sql(sql(COUNT_CONVERSATION), (month, month, workspace_id)).fetchone()
    return plans.enforced() and limit is not None and used > limit


# A message's own writes, the most repeated statements of all, as fixed SQL (see
# CONVERSATION above for why); the FTS5 triggers index the message as for any insert.
INSERT_MESSAGE = ('INSERT INTO "message" ("conversation_id", "workspace_id", "sender", '
                  '"author_id", "body", "created_at", "over_limit", "client_id") '
                  'VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING "id"')
TOUCH_CONVERSATION = ('UPDATE "conversation" SET "last_activity_at" = ?, "last_preview" = ? '
                      'WHERE "id" = ? '
                      'RETURNING "unread_count", "status", "over_limit", "assignee_id"')
VISITOR_WROTE = ('UPDATE "conversation" SET "last_activity_at" = ?, "last_preview" = ?, '
                 '"unread_count" = "unread_count" + 1, "status" = \'open\', '
                 '"over_limit" = ("over_limit" OR ?) WHERE "id" = ? '
                 'RETURNING "unread_count", "over_limit", "assignee_id"')
COUNT_CONVERSATION = ('UPDATE "workspace" SET "month_conversations" = CASE WHEN "usage_month" = ? '
                      'THEN "month_conversations" + 1 ELSE 1 END, "usage_month" = ? '
                      'WHERE "id" = ? RETURNING "month_conversations", "conversation_limit"')


def _add_message(conversation, sender, body, upload, author=None, over_limit=False,
                 client_id="") -> Message:
    now = utcnow()
    cursor = database.execute_sql(sql(INSERT_MESSAGE), (
        conversation.id, conversation.workspace_id, sender, author.id if author else None, body,
        str(now), bool(over_limit), client_id))
    message = Message(id=cursor.fetchone()[0], conversation=conversation,
                      workspace_id=conversation.workspace_id, sender=sender, author=author,
                      body=body, created_at=now, over_limit=over_limit, client_id=client_id)
    attachments = []
    if upload is not None:
        filename, content_type, data = upload
        attachments.append(Attachment.create(
            message=message, workspace_id=conversation.workspace_id, filename=filename,
            content_type=content_type, size=len(data), data=data))
    # The stream renders this very object (live.publish): its attachments are known here,
    # so the fragment does not ask the database for them again.
    message.__dict__["attachments"] = attachments
    message.event = events.new(conversation.workspace_id, conversation.id, ChatEvent.MESSAGE,
                               message.id, sender, message)
    return message


def hand_over_conversations(anonymous: Visitor, signed_in: Visitor) -> int:
    """A browser's anonymous visitor signed in on the customer's site (app/widget/identity.py):
    the chat they started before signing in becomes the signed-in user's, so it goes on in the
    same window and shows on their other devices. The team's pages hear of the new visitor as
    of any change of details. Returns how many conversations moved."""
    with database.atomic():
        moved = list(Conversation.select(Conversation.id, Conversation.workspace)
                     .where(Conversation.visitor == anonymous.id))
        if not moved:
            return 0
        Conversation.update(visitor=signed_in.id).where(
            Conversation.id.in_([c.id for c in moved])).execute()
        written = [events.new(c.workspace_id, c.id, ChatEvent.VISITOR) for c in moved]
    widget.forget_visitor(anonymous.id)
    widget.forget_visitor(signed_in.id)
    _publish(written)
    return len(moved)


def _publish(written: list) -> None:
    """Hand this write's events (events.new) to the streams from memory, once committed. In
    the chat writer's batch they are numbered, stored and published by the batch around its
    commit; inside another caller's transaction nothing is committed yet, so the dispatcher
    reads them after that commit instead."""
    if live.deferred(written):
        return
    if database.in_transaction():
        live.wake()
    else:
        live.publish(written)


def checked_upload(filename: str | None, data: bytes | None):
    if data is None:
        return None
    try:
        safe_name, content_type = files.check(filename or "", data)
    except files.FileRefused as exc:
        raise ChatError(str(exc), field="file") from None
    return safe_name, content_type, data


def post_visitor_message(site: Site, visitor: Visitor, body: str, upload=None,
                         page_url: str = "", conversation: Conversation | None = None,
                         client_id: str = "") -> Message:
    """`conversation`: the visitor's current one when the caller has just loaded it."""
    body = check_body(body, upload is not None)
    # A visitor's words are never refused for the plan: a conversation past the plan's
    # monthly limit is stored, and flagged for the owner with every message in it.
    try:
        with database.atomic():
            conversation = conversation or current_conversation(visitor)
            started = conversation is None
            if started:
                over = _count_new_conversation(site.workspace_id)
                # Round-robin, when the workspace has it on (app/chat/labels.py).
                turn = labels.next_in_turn(site.workspace_id, utcnow() - PRESENCE_FRESH)
                conversation = Conversation.create(workspace=site.workspace_id, site=site,
                                                   visitor=visitor, over_limit=over,
                                                   started_page_url=page_url[:2000],
                                                   assignee=turn)
            else:
                over = conversation.over_limit
            message = _add_message(conversation, Message.VISITOR, body, upload, over_limit=over,
                                   client_id=client_id)
            last_preview = preview(body or f"📎 {upload[0]}")
            unread, over_limit, assignee_id = database.execute_sql(sql(VISITOR_WROTE), (
                str(message.created_at), last_preview, bool(over), conversation.id)).fetchone()
            if visitor.last_seen_at < message.created_at - timedelta(minutes=1):
                # Minute precision is all "last seen" needs; it spares a write per message.
                Visitor.update(last_seen_at=message.created_at).where(
                    Visitor.id == visitor.id).execute()
            written = [message.event]
            was_open = conversation.status == Conversation.OPEN
            # The conversation as it now stands in the database, for the stream's fragments
            # (rendered from this object: see live.publish).
            conversation.visitor, conversation.site = visitor, site
            conversation.last_activity_at, conversation.last_preview = message.created_at, last_preview
            conversation.unread_count, conversation.over_limit = unread, bool(over_limit)
            conversation.assignee_id, conversation.status = assignee_id, Conversation.OPEN
            message.event.conversation = conversation
            if not was_open:
                written.append(events.new(conversation.workspace_id, conversation.id,
                                          ChatEvent.STATUS, conversation=conversation))
    except IntegrityError:
        # The same post, stored by a request that committed while this one waited for the
        # writer lock (the unique client id index): nothing of this attempt is kept.
        current = current_conversation(visitor)
        earlier = current and Message.sent_before(current.id, Message.VISITOR, client_id)
        if not earlier:
            raise
        return earlier
    _publish(written)
    # Queued for the worker and told to automations only once committed (live.after_commit):
    # neither may see a message that a failed commit then takes back.
    if not agents_online(site.workspace_id):
        live.after_commit(lambda: notices.schedule_away_notice(conversation.id))
    if started:
        publish(site.workspace_id, "conversation_started", visitor, site, conversation, body)
    publish(site.workspace_id, "message_received", visitor, site, conversation, body)
    return message


TOO_FAST = "Too many attempts in a short time. Wait a minute, then send your message again."
TOO_MANY_FILES = "Too many attempts in a short time. Wait a few minutes, then send the file again."


def send_visitor_message(site: Site, visitor: Visitor, body: str, filename: str = "",
                         data: bytes | None = None, *, name: str = "", email: str = "",
                         page_url: str = "", conversation: Conversation | None = None,
                         client_id: str = "") -> Message:
    """The one set of rules for a visitor's message, in the order they are told (text or file,
    limits, details), whatever form it came in. Name and e-mail arrive checked by
    WidgetMessageForm; a refusal is a ChatError and changes nothing. Away mode refuses nothing:
    with nobody online the message is kept (and the team e-mailed), and the chat then asks the
    visitor where to answer (the widget's "We'll answer by e-mail").

    `client_id` (see client_id_from): a retry of a post already stored returns that message
    (`replayed`) before any rule, so that it is answered as the first was, whatever the limits
    or away mode say now, and stores nothing."""
    current = conversation or (current_conversation(visitor) if client_id else None)
    earlier = current and Message.sent_before(current.id, Message.VISITOR, client_id)
    if earlier:
        return earlier

    if data is not None and not limits.upload_allowed(visitor):
        raise ChatError(TOO_MANY_FILES, status=429, field="file")
    upload = checked_upload(filename, data)
    check_body(body, upload is not None)  # refuse before saving details
    if not limits.message_allowed(site, visitor):
        raise ChatError(TOO_FAST, status=429)
    if email or name:
        update_visitor(visitor, name or visitor.name, email or visitor.email)
    return post_visitor_message(site, visitor, body, upload, page_url=page_url,
                                conversation=conversation, client_id=client_id)


def first_message(message: Message) -> bool:
    """Whether nothing was said in its conversation before this message."""
    return not Message.select(Message.id).where(
        (Message.conversation == message.conversation_id) & (Message.id < message.id)).exists()


def post_agent_reply(conversation: Conversation, user: User, body: str, upload=None,
                     client_id: str = "") -> Message:
    """An agent's reply. A retry of a post already stored (same `client_id`) returns that
    message (`replayed`) and stores and sends nothing."""
    earlier = Message.sent_before(conversation.id, Message.AGENT, client_id)
    if earlier:
        return earlier
    body = check_body(body, upload is not None)
    try:
        with database.atomic():
            message = _add_message(conversation, Message.AGENT, body, upload, author=user,
                                   client_id=client_id)
            last_preview = preview(body or f"📎 {upload[0]}")
            unread, status, over_limit, assignee_id = database.execute_sql(sql(TOUCH_CONVERSATION), (
                str(message.created_at), last_preview, conversation.id)).fetchone()
            # As it now stands in the database, for the stream's fragments (live.publish).
            conversation.last_activity_at, conversation.last_preview = message.created_at, last_preview
            conversation.unread_count, conversation.status = unread, status
            conversation.over_limit, conversation.assignee_id = bool(over_limit), assignee_id
            message.event.conversation = conversation
    except IntegrityError:
        # Stored meanwhile by the same post sent twice at once (the unique client id index).
        earlier = Message.sent_before(conversation.id, Message.AGENT, client_id)
        if not earlier:
            raise
        return earlier
    _publish([message.event])
    visitor = conversation.visitor
    if visitor.email and not visitor_connected(conversation.id):
        live.after_commit(lambda: background.enqueue("chat.email_reply", message.id))
    return message


def typing(conversation: Conversation, actor: str) -> None:
    _publish([events.new(conversation.workspace_id, conversation.id, ChatEvent.TYPING,
                         actor=actor)])


def mark_read(conversation: Conversation) -> bool:
    """Everything the visitor wrote in it is read by the team; whether that changed anything
    (False: it was read already, and no event is sent)."""
    # The visitor's "Seen" counts what they can see: a note leaves it as it was.
    last = (Message.select(Message.id).where((Message.conversation == conversation)
                                             & Message.visible_to_visitor())
            .order_by(Message.id.desc()).first())
    last_id = last.id if last else 0
    if conversation.unread_count == 0 and conversation.agent_read_message_id >= last_id:
        return False
    with database.atomic():
        Conversation.update(unread_count=0, agent_read_message_id=last_id).where(
            Conversation.id == conversation.id).execute()
        event = events.new(conversation.workspace_id, conversation.id, ChatEvent.READ,
                           ref_id=last_id, actor=Message.AGENT)
    conversation.unread_count, conversation.agent_read_message_id = 0, last_id
    _publish([event])
    return True


def set_status(conversation: Conversation, status: str) -> None:
    if status not in (Conversation.OPEN, Conversation.RESOLVED):
        raise ChatError("Unknown status.", status=400)
    with database.atomic():
        Conversation.update(status=status).where(Conversation.id == conversation.id).execute()
        # The new status as the event's actor: when a conversation was resolved (app/reports).
        event = events.new(conversation.workspace_id, conversation.id, ChatEvent.STATUS,
                           actor=status)
    was, conversation.status = conversation.status, status
    _publish([event])
    if status == Conversation.RESOLVED and was != status:
        publish(conversation.workspace_id, "conversation_resolved", conversation.visitor,
                conversation.site, conversation)


def assign(conversation: Conversation, assignee_id: int | None) -> None:
    if assignee_id is not None and not Membership.select().where(
            (Membership.workspace == conversation.workspace_id)
            & (Membership.user == assignee_id)).exists():
        raise ChatError("Choose a member of this workspace.", field="assignee")
    with database.atomic():
        Conversation.update(assignee=assignee_id).where(Conversation.id == conversation.id).execute()
        event = events.new(conversation.workspace_id, conversation.id, ChatEvent.STATUS)
    _publish([event])


def delete_conversation(conversation: Conversation, actor: str) -> None:
    """Gone at once: messages, attachments, search entries (triggers) and past events.

    When the visitor deletes their last conversation, what they told us about themselves
    (name, e-mail, the page they came from) goes too; the bare visitor row stays so that
    their widget keeps working."""
    with database.atomic():
        ChatEvent.delete().where(ChatEvent.conversation_id == conversation.id).execute()
        conversation.delete_instance()  # messages and attachments cascade
        if actor == Message.VISITOR and not Conversation.select().where(
                Conversation.visitor == conversation.visitor_id).exists():
            Visitor.update(name="", email="", first_page_url="").where(
                Visitor.id == conversation.visitor_id).execute()
        event = events.new(conversation.workspace_id, conversation.id, ChatEvent.DELETED,
                           actor=actor)  # last: the counter's row is held until the commit
    widget.forget_visitor(conversation.visitor_id)
    _publish([event])
    erasure.request_erasure()


def delete_visitor(visitor: Visitor) -> int:
    """An agent deletes a visitor with everything they wrote, in one action: every
    conversation of theirs (messages, attachments, search entries, past events) and the
    visitor's own row (name, e-mail, pages). Open dashboards are told each conversation is
    gone; the visitor's widget, if it comes back, starts as a new visitor. Returns how many
    conversations went."""
    conversations = list(Conversation.select(Conversation.id, Conversation.workspace)
                         .where(Conversation.visitor == visitor.id))
    with database.atomic():
        gone = [c.id for c in conversations]
        if gone:
            ChatEvent.delete().where(ChatEvent.conversation_id.in_(gone)).execute()
        visitor.delete_instance()  # its conversations, their messages and files (ON DELETE CASCADE)
        written = [events.new(c.workspace_id, c.id, ChatEvent.DELETED, actor=Message.AGENT)
                   for c in conversations]  # last: the counter's row is held until the commit
    widget.forget_visitor(visitor.id)
    _publish(written)
    erasure.request_erasure()
    return len(conversations)


# --- who is here -----------------------------------------------------------------------------------


# Engine -> {workspace id: monotonic time until which "an agent is online" is taken as known}. Presence
# rows are themselves only fresh to PRESENCE_FRESH (45 s), so trusting a "yes" for one more
# second changes nothing a visitor sees, and spares a query on every widget message. A "no"
# is never cached: the first agent to arrive is noticed at once.
# Per engine: the same workspace id in another database (a test's, a restore's) is another
# workspace, and a PostgreSQL test database is reused with its ids started again.
_online_until: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
ONLINE_TRUST_SECONDS = 1.0


def agents_online(workspace_id: int) -> bool:
    trusted = _online_until.setdefault(database.obj, {})
    if trusted.get(workspace_id, 0.0) > time.monotonic():
        return True
    online = AGENT_PRESENT.scalar(workspace_id, utcnow() - PRESENCE_FRESH) is not None
    if online:
        trusted[workspace_id] = time.monotonic() + ONLINE_TRUST_SECONDS
    return online


def visitor_connected(conversation_id: int) -> bool:
    return VISITOR_PRESENT.scalar(conversation_id, utcnow() - PRESENCE_FRESH) is not None


# --- inbox and search ------------------------------------------------------------------------------

FILTERS = ("open", "resolved", "all", "mine")


class InboxRow:
    """One inbox row: the columns the row template shows, read as plain values. Three model
    instances per row (conversation, visitor, site) cost more than the rest of the page."""

    __slots__ = ("id", "status", "unread_count", "last_preview", "assignee_id", "over_limit",
                 "last_activity_at", "visitor", "site", "assignee_name")

    class Named:
        __slots__ = ("name", "email", "public_id", "label")

    def __init__(self, row):
        (self.id, self.status, self.unread_count, self.last_preview, self.assignee_id,
         self.over_limit, self.last_activity_at, visitor_name, visitor_email, public_id,
         site_name, self.assignee_name) = row
        self.visitor = visitor = self.Named()
        visitor.name, visitor.email, visitor.public_id = visitor_name, visitor_email, public_id
        visitor.label = Visitor.label.fget(visitor)  # the model's own rule for a visitor's name
        self.site = site = self.Named()
        site.name = site_name


INBOX_COLUMNS = (Conversation.id, Conversation.status, Conversation.unread_count,
                 Conversation.last_preview, Conversation.assignee, Conversation.over_limit,
                 Conversation.last_activity_at, Visitor.name, Visitor.email, Visitor.public_id,
                 Site.name, User.name)


def _inbox_query(filter_: str, labelled: bool = False) -> Prepared:
    """The inbox's page query for one filter, built once (it is the dashboard's first page);
    `labelled`: of the conversations carrying one label only (its id the second argument)."""
    def build(workspace_id, *rest):
        query = (Conversation.select(*INBOX_COLUMNS)
                 .join(Visitor).switch(Conversation).join(Site).switch(Conversation)
                 .join(User, JOIN.LEFT_OUTER, on=(Conversation.assignee == User.id))
                 .where(Conversation.workspace == workspace_id))
        if labelled:
            label_id, *rest = rest
            query = query.where(Conversation.id.in_(labels.labelled(label_id)))
        if filter_ == "open":
            query = query.where(Conversation.status == Conversation.OPEN)
        elif filter_ == "resolved":
            query = query.where(Conversation.status == Conversation.RESOLVED)
        elif filter_ == "mine":
            user_id, *rest = rest
            query = query.where(Conversation.assignee == user_id)
        limit, offset = rest
        return (query.order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
                .limit(limit).offset(offset).tuples())

    return Prepared(build, arity=(4 if filter_ == "mine" else 3) + labelled)


INBOX = {f: _inbox_query(f) for f in FILTERS}
INBOX_LABELLED = {f: _inbox_query(f, labelled=True) for f in FILTERS}


def inbox(workspace_id: int, user: User, filter_: str = "open", page: int = 1, label_id: int = 0):
    """`label_id`: only conversations carrying that label (the caller checked it is the
    workspace's)."""
    page = max(1, page)
    args = (workspace_id, user.id) if filter_ == "mine" else (workspace_id,)
    args += (label_id,) if label_id else ()
    query = (INBOX_LABELLED if label_id else INBOX)[filter_ if filter_ in INBOX else "all"]
    rows = [InboxRow(row) for row in query.rows(*args, INBOX_PAGE + 1, (page - 1) * INBOX_PAGE)]
    return rows[:INBOX_PAGE], len(rows) > INBOX_PAGE


LAST_EVENT = Prepared(lambda ws_id: EventCounter.select(EventCounter.seq).where(
    EventCounter.workspace_id == ws_id).limit(1))


def last_event_id(ws_id: int) -> int:
    """The workspace's last event number: a page rendered now shows everything up to it, and
    its stream follows on from there."""
    return LAST_EVENT.scalar(ws_id) or 0


def unread_total(workspace_id: int) -> int:
    return UNREAD_TOTAL.scalar(workspace_id)


SEARCH_MERGE_PAGES = 200
SEARCH_INDEX_STEP = 500  # messages indexed in one short write transaction
SEARCH_CATCH_UP_STEPS = 1  # at most this many steps before a search (the worker does the rest):
# a search right after a burst pays for indexing up to SEARCH_INDEX_STEP messages (~30 ms)


class _IndexedInSteps:
    """SQLite's search index: FTS5, given new messages after they are written, in steps up to
    `indexed_to` (migration 11), its segments merged in bounded steps (automatic merging is
    off: migration 8)."""

    INDEXED_TO = 'SELECT "indexed_to" FROM "search_index_state" WHERE "id" = 1'
    NEWEST = 'SELECT coalesce(max("id"), 0) FROM "message"'
    INDEX = ('INSERT INTO message_fts(rowid, body) SELECT "id", "body" '
             'FROM "message" WHERE "id" > ? AND "id" <= ?')
    ADVANCE = 'UPDATE "search_index_state" SET "indexed_to" = ? WHERE "id" = 1'
    MERGE = "INSERT INTO message_fts(message_fts, rank) VALUES ('merge', ?)"

    def behind(self) -> bool:
        # Two reads, not a write transaction: every search asks this first, and a write
        # transaction per search, even an empty one, queued the search behind the worker's
        # index merges (measured: rare-word search p99 19 -> 68 ms).
        (done,) = database.execute_sql(self.INDEXED_TO).fetchone()
        (newest,) = database.execute_sql(self.NEWEST).fetchone()
        return newest > done

    def index(self, limit: int) -> int:
        with database.atomic():
            (done,) = database.execute_sql(self.INDEXED_TO).fetchone()
            (newest,) = database.execute_sql(self.NEWEST).fetchone()
            upto = min(newest, done + limit)
            if upto <= done:
                return 0
            database.execute_sql(self.INDEX, (done, upto))
            database.execute_sql(self.ADVANCE, (upto,))
            return upto - done

    def merge(self, pages: int) -> int:
        with database.atomic():
            before = database.connection().total_changes
            database.execute_sql(self.MERGE, (pages,))
            # The command itself counts as one change; more means it merged something (FTS5 docs).
            return max(0, database.connection().total_changes - before - 1)


class _KeptByTheDatabase:
    """PostgreSQL's search index: the tsvector column is generated with the row itself
    (migration 2) and its GIN index kept by the database, so no step has anything to do."""

    def behind(self) -> bool:
        return False

    def index(self, limit: int) -> int:
        return 0

    def merge(self, pages: int) -> int:
        return 0


# The search index's upkeep in each dialect: the one place that knows which engine has any.
SEARCH_UPKEEP = {"sqlite": _IndexedInSteps(), "postgres": _KeptByTheDatabase()}


def merge_search_index(pages: int = SEARCH_MERGE_PAGES) -> int:
    """One bounded step of merging the index's segments, in its own short write transaction;
    how many rows the database changed (0: nothing to merge, and always 0 on PostgreSQL)."""
    return SEARCH_UPKEEP[dialect()].merge(pages)


def index_new_messages(limit: int = SEARCH_INDEX_STEP) -> int:
    """Put up to `limit` messages written since the last step into the search index, in one
    short write transaction; how many (always 0 on PostgreSQL, whose search column is
    generated with the row). Messages are indexed after they are written, not by their
    insert (migration 11): a chat message does not wait for tokenizing. Inside one write
    transaction no message can be deleted or edited between reading and indexing it, and one
    deleted before is not read."""
    return SEARCH_UPKEEP[dialect()].index(limit)


SEARCH_UPKEEP_BUDGET = 10.0  # seconds of indexing, then of merging, per worker run at most
SEARCH_UPKEEP_PAUSE = 0.05  # between two steps: waiting writers have the lock in between


def keep_search_index(budget: float = SEARCH_UPKEEP_BUDGET) -> None:
    """The worker's minute of search upkeep: the messages written since the last run are
    indexed (migration 11), then segments are merged (automatic merging is off: migration 8),
    in small steps, each its own short write transaction, with pauses between. (PostgreSQL's
    search column needs no upkeep: both steps answer 0 there at once.)"""
    deadline = time.monotonic() + budget
    while index_new_messages() and time.monotonic() < deadline:
        time.sleep(SEARCH_UPKEEP_PAUSE)
    deadline = time.monotonic() + budget
    while merge_search_index() and time.monotonic() < deadline:
        time.sleep(SEARCH_UPKEEP_PAUSE)


def search_catch_up(steps: int = SEARCH_CATCH_UP_STEPS) -> None:
    """Before a search: index what the worker has not yet (it indexes every minute), so that
    a message just written is found. Bounded: far behind (a burst of more than
    SEARCH_INDEX_STEP messages within the minute), the newest wait for the worker. Never
    behind on PostgreSQL."""
    if not SEARCH_UPKEEP[dialect()].behind():
        return
    for _ in range(steps):
        if index_new_messages() < SEARCH_INDEX_STEP:
            return


def fts_query(q: str) -> str | None:
    """Turn anything a person types into a safe FTS5 query: each word quoted, all required,
    the last one also matching as a prefix. Operators and quotes lose their meaning."""
    words = [w for w in "".join(ch if ch.isalnum() else " " for ch in q).split()][:12]
    if not words:
        return None
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


HL_START, HL_END = "\x02", "\x03"


# A search's statement in each dialect: FTS5's MATCH and highlight() on SQLite; on PostgreSQL
# the generated tsvector column (migration 2) and ts_headline over the whole body. Both take
# (query, workspace id, limit) and give (id, conversation id, created_at, highlighted body).
SEARCH_SQL = {
    "sqlite": (
        "SELECT m.id, m.conversation_id, m.created_at, "
        f"highlight(message_fts, 0, '{HL_START}', '{HL_END}') "
        "FROM message_fts JOIN message m ON m.id = message_fts.rowid "
        "WHERE message_fts MATCH ? AND m.workspace_id = ? ORDER BY message_fts.rowid DESC LIMIT ?"),
    "postgres": (
        "SELECT m.id, m.conversation_id, m.created_at, ts_headline('lumnar_search', m.body, q, "
        f"'StartSel={HL_START}, StopSel={HL_END}, HighlightAll=true') "
        "FROM message m, to_tsquery('lumnar_search', %s) q "
        "WHERE m.search @@ q AND m.workspace_id = %s ORDER BY m.id DESC LIMIT %s"),
}


def ts_query(q: str) -> str | None:
    """PostgreSQL's form of fts_query(): every word, the last one as a prefix."""
    words = [w for w in "".join(ch if ch.isalnum() else " " for ch in q).split()][:12]
    return " & ".join(words) + ":*" if words else None


def search(workspace_id: int, q: str, limit: int = 50):
    postgres = dialect() == "postgres"
    match = ts_query(q) if postgres else fts_query(q)
    if match is None:
        return []
    search_catch_up()
    rows = database.execute_sql(SEARCH_SQL[dialect()], (match, workspace_id, limit)).fetchall()
    # created_at as SQLite gives it (text), whichever engine answered.
    return [(i, c, str(at), text) for i, c, at, text in rows] if postgres else list(rows)


# --- saved replies ---------------------------------------------------------------------------------

# A workspace may keep thousands of saved replies: nothing shows them all at once. The saved
# replies page shows them a page at a time (searchable), the reply form none at all (agents
# search them as they type: find_saved_replies), and saving one writes one row and reads none
# of the others (the unique index on (workspace, shortcut) says whether its shortcut is taken).
SAVED_REPLY_PAGE = 50
SAVED_REPLY_MATCHES = 8
SHORTCUT_TAKEN = "A saved reply with this shortcut exists already."


def saved_replies(workspace_id: int, q: str = "", page: int = 1, per_page: int = SAVED_REPLY_PAGE):
    """One page of the workspace's saved replies, by shortcut, those matching `q` (in their
    shortcut or text) only: (replies, whether more follow)."""
    query = SavedReply.select().where(SavedReply.workspace == workspace_id)
    q = q.strip().lstrip("/")
    if q:
        query = query.where(SavedReply.shortcut.contains(q) | SavedReply.body.contains(q))
    page = max(1, page)
    rows = list(query.order_by(SavedReply.shortcut).limit(per_page + 1)
                .offset((page - 1) * per_page))
    return rows[:per_page], len(rows) > per_page


def find_saved_replies(workspace_id: int, q: str, limit: int = SAVED_REPLY_MATCHES) -> list:
    """What the reply form's picker offers for what the agent typed: shortcuts starting with
    it first, then shortcuts or texts containing it; at most `limit`, whatever the list's
    size (one query, ordered and cut by the database)."""
    q = q.strip().lstrip("/")[:100]
    query = SavedReply.select().where(SavedReply.workspace == workspace_id)
    if not q:
        return list(query.order_by(SavedReply.shortcut).limit(limit))
    starts = SavedReply.shortcut.startswith(q)
    return list(query.where(starts | SavedReply.shortcut.contains(q) | SavedReply.body.contains(q))
                .order_by(Case(None, ((starts, 0),), 1), SavedReply.shortcut).limit(limit))


def saved_reply_by_shortcut(workspace_id: int, shortcut: str) -> SavedReply | None:
    """The saved reply that `/shortcut` typed in a reply stands for, if any."""
    return SavedReply.get_or_none((SavedReply.workspace == workspace_id)
                                  & (SavedReply.shortcut == shortcut.strip().lower()[:40]))


def add_saved_reply(workspace_id: int, shortcut: str, body: str) -> SavedReply:
    """A new saved reply; a ChatError beside the shortcut when the workspace has one by that
    name already (said by the unique index, inside a savepoint, without reading the list)."""
    try:
        with database.atomic():
            return SavedReply.create(workspace=workspace_id, shortcut=shortcut, body=body)
    except IntegrityError:
        raise ChatError(SHORTCUT_TAKEN, status=422, field="shortcut") from None


def delete_saved_reply(workspace_id: int, reply_id: int) -> bool:
    deleted = SavedReply.delete().where((SavedReply.id == reply_id)
                                        & (SavedReply.workspace == workspace_id)).execute()
    return bool(deleted)

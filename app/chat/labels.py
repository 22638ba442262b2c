"""Labels on conversations, and new conversations handed out in turn.

A workspace keeps its own labels (a name and a colour); agents put them on conversations and
take them off, and every open inbox and conversation page sees that live: each change is a
chat event of its own kind (EVENT), rendered by the agents' event template like a change of
status. `conversation_label` is one row per (conversation, label), nothing more, so that other
parts (reports) can count by label with a join.

Round-robin: when a workspace switches it on, each new conversation is assigned, in the
transaction that creates it, to the next member in user-id order after the last one given a
turn, among those with the dashboard open (their Presence rows) and below their own limit of
open conversations. Where the turn stands is one row per workspace (`assignment_rule`),
updated first: on PostgreSQL the UPDATE holds that row until the transaction ends, so a second
conversation starting at the same time waits, then reads the turn (and the open counts) as the
first one left them; SQLite's single writer gives the same order.

This module does not import the chat service (the service calls next_in_turn), so it writes
its events with app/chat/events.py and hands them to the streams itself.
"""

import functools
import unicodedata

from peewee import (
    JOIN,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    IntegrityError,
    fn,
)

from app.accounts.models import Membership, User, Workspace
from app.chat import events, live
from app.chat.models import Conversation, Message, Presence
from app.db import BaseModel, Prepared, database, sql, utcnow
from app.errors import RuleError
from app.widget.colours import HEX, contrast

EVENT = "label"  # the chat event of a label put on or taken off a conversation (ref_id: the label)
# A label renamed, recoloured or deleted (ref_id: the label): a workspace's event, on no one
# conversation (conversation_id 0), so that every agent's page repaints or drops its chips.
CHANGED = "label_changed"
NAME_MAX = 40
LABELS_MAX = 100  # per workspace: every conversation's "add a label" list shows them all
LIMIT_MAX = 1000
LIMIT_HINT = f"Choose a whole number from 0 (no limit) to {LIMIT_MAX}."
BLACK, WHITE = "#000000", "#ffffff"


class LabelError(RuleError):
    """A label rule said no."""


class Label(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", index=False)
    name = CharField(max_length=NAME_MAX)
    # The name as compared for uniqueness, folded in Python: SQLite's lower() folds ASCII
    # only, PostgreSQL's the whole of Unicode; casefold() is the same on both engines.
    folded = CharField(max_length=4 * NAME_MAX)
    colour = CharField(max_length=7)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "label"
        indexes = ((("workspace", "folded"), True),)

    @property
    def ink(self) -> str:
        return ink(self.colour)


class ConversationLabel(BaseModel):
    # The unique pair's index serves lookups by conversation; the label's own index the filter.
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE", index=False)
    label = ForeignKeyField(Label, on_delete="CASCADE")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "conversation_label"
        indexes = ((("conversation", "label"), True),)


class AssignmentRule(BaseModel):
    """A workspace's round-robin switch, and the member who was given the last turn."""

    workspace = ForeignKeyField(Workspace, primary_key=True, on_delete="CASCADE")
    enabled = BooleanField(default=False)
    last_user_id = IntegerField(default=0)

    class Meta:
        table_name = "assignment_rule"


class MemberLimit(BaseModel):
    """How many open conversations round-robin may give a member at most (0: no limit)."""

    membership = ForeignKeyField(Membership, primary_key=True, on_delete="CASCADE")
    max_open = IntegerField(default=0)

    class Meta:
        table_name = "member_limit"


LABEL_MODELS = [Label, ConversationLabel, AssignmentRule, MemberLimit]


# --- colours and names -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)  # asked for every chip of every row and event rendered
def ink(colour: str) -> str:
    """The chip's text colour on `colour`: black or white, whichever contrasts more. The
    better of the two always reaches at least 4.58:1 (the worst case is a background of
    relative luminance 0.18), so any #rrggbb passes WCAG AA for text."""
    return BLACK if contrast(BLACK, colour) >= contrast(WHITE, colour) else WHITE


def check_colour(colour) -> str:
    colour = colour.strip().lower() if isinstance(colour, str) else ""
    if not HEX.fullmatch(colour):
        raise LabelError("Use a colour like #4338ca (a # and six hex digits).", field="colour")
    return colour


# Characters that show nothing or change the text around them (controls, direction marks),
# but the joiner inside emoji sequences such as 👩‍💻.
UNSEEN = ("Cc", "Cf", "Co", "Cs")
JOINER = "\u200d"


def check_name(name) -> str:
    name = " ".join(name.split()) if isinstance(name, str) else ""
    if not name:
        raise LabelError("Give the label a name.", field="name")
    if len(name) > NAME_MAX:
        raise LabelError(f"Keep the name to {NAME_MAX} characters or fewer "
                         f"(this one has {len(name)}).", field="name")
    if any(unicodedata.category(ch) in UNSEEN and ch != JOINER for ch in name):
        raise LabelError("Use letters, digits, spaces and punctuation only.", field="name")
    return name


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


TAKEN = "A label named “{}” exists already (names are compared without regard to case)."


# --- the workspace's labels ------------------------------------------------------------------


def workspace_labels(workspace_id: int) -> list[Label]:
    return list(Label.select().where(Label.workspace == workspace_id).order_by(Label.folded))


def scoped(workspace_id: int, label_id) -> Label | None:
    """The label if it is this workspace's; None for any other id."""
    if not isinstance(label_id, int) or label_id <= 0:
        return None
    return Label.get_or_none((Label.id == label_id) & (Label.workspace == workspace_id))


def create(workspace_id: int, name, colour) -> Label:
    name, colour = check_name(name), check_colour(colour)
    if Label.select().where(Label.workspace == workspace_id).count() >= LABELS_MAX:
        raise LabelError(f"A workspace can keep {LABELS_MAX} labels. Delete one you no longer "
                         "use first.", field="name", status=409)
    try:
        with database.atomic():
            return Label.create(workspace=workspace_id, name=name, folded=_folded(name),
                                colour=colour)
    except IntegrityError:
        raise LabelError(TAKEN.format(name), field="name") from None


def update(label: Label, name, colour) -> Label:
    name, colour = check_name(name), check_colour(colour)
    try:
        with database.atomic():
            Label.update(name=name, folded=_folded(name), colour=colour).where(
                Label.id == label.id).execute()
            event = events.new(label.workspace_id, 0, CHANGED, ref_id=label.id, actor=Message.AGENT)
    except IntegrityError:
        raise LabelError(TAKEN.format(name), field="name") from None
    label.name, label.folded, label.colour = name, _folded(name), colour
    _tell([event])
    return label


def delete(label: Label) -> None:
    """The label and its place on every conversation (ON DELETE CASCADE)."""
    with database.atomic():
        label.delete_instance()
        event = events.new(label.workspace_id, 0, CHANGED, ref_id=label.id, actor=Message.AGENT)
    _tell([event])


# --- labels on conversations -----------------------------------------------------------------

# The chips of one conversation: asked for each agent event rendered (the inbox row shows them).
OF_CONVERSATION = Prepared(lambda conversation_id: (
    Label.select(Label.id, Label.name, Label.colour, ConversationLabel.conversation)
    .join(ConversationLabel).where(ConversationLabel.conversation == conversation_id)
    .order_by(Label.folded).tuples()))


class Chip:
    """A label as a chip shows it (plain values: an inbox page shows many)."""

    __slots__ = ("id", "name", "colour", "ink")

    def __init__(self, label_id, name, colour):
        self.id, self.name, self.colour, self.ink = label_id, name, colour, ink(colour)


def chips_for(conversation_ids) -> dict[int, list[Chip]]:
    """{conversation id: its labels, by name}, in one statement whatever the number of ids."""
    ids = [i for i in conversation_ids if i]
    if not ids:
        return {}
    if len(ids) == 1:
        rows = OF_CONVERSATION.rows(ids[0])
    else:
        rows = (Label.select(Label.id, Label.name, Label.colour, ConversationLabel.conversation)
                .join(ConversationLabel).where(ConversationLabel.conversation.in_(ids))
                .order_by(Label.folded).tuples())
    found = {}
    for label_id, name, colour, conversation_id in rows:
        found.setdefault(conversation_id, []).append(Chip(label_id, name, colour))
    return found


def labelled(label_id):
    """The conversations carrying a label, as a subquery (the inbox's filter)."""
    return ConversationLabel.select(ConversationLabel.conversation).where(
        ConversationLabel.label == label_id)


def put_on(conversation: Conversation, label: Label) -> bool:
    """Whether the label was put on now (False: it was there already, and nothing is sent)."""
    try:
        with database.atomic():
            ConversationLabel.create(conversation=conversation.id, label=label.id)
            event = events.new(conversation.workspace_id, conversation.id, EVENT,
                               ref_id=label.id, actor=Message.AGENT)
    except IntegrityError:
        return False  # put on by someone else meanwhile: the unique pair
    _tell([event])
    return True


def take_off(conversation: Conversation, label: Label) -> bool:
    with database.atomic():
        gone = ConversationLabel.delete().where(
            (ConversationLabel.conversation == conversation.id)
            & (ConversationLabel.label == label.id)).execute()
        if not gone:
            return False
        event = events.new(conversation.workspace_id, conversation.id, EVENT,
                           ref_id=label.id, actor=Message.AGENT)
    _tell([event])
    return True


def _tell(written: list) -> None:
    # Label changes come from dashboard requests, committed above, never from inside the chat
    # writer's batch: published from this thread, as app/chat/live.py asks of such writes.
    live.publish(written)


# --- round-robin -----------------------------------------------------------------------------

# First statement of the turn: it holds the rule's row until the transaction ends (see the
# module's doc). No row, or switched off: nothing is locked and nobody is chosen.
TAKE_TURN = ('UPDATE "assignment_rule" SET "last_user_id" = "last_user_id" '
             'WHERE "workspace_id" = ? AND "enabled" RETURNING "last_user_id"')
GIVE_TURN = 'UPDATE "assignment_rule" SET "last_user_id" = ? WHERE "workspace_id" = ?'


def next_in_turn(workspace_id: int, online_since) -> int | None:
    """Called in the transaction that creates a conversation: the user id to assign it to
    (the turn moves on to them), or None when round-robin is off or nobody can take it.
    `online_since`: Presence rows seen after it count as online."""
    turn = database.execute_sql(sql(TAKE_TURN), (workspace_id,)).fetchone()
    if turn is None:
        return None
    free = _free_members(workspace_id, online_since)
    if not free:
        return None
    last = turn[0]
    chosen = next((user_id for user_id in free if user_id > last), free[0])
    database.execute_sql(sql(GIVE_TURN), (chosen, workspace_id))
    return chosen


def _free_members(workspace_id: int, online_since) -> list[int]:
    """Members with the dashboard open and below their limit, by user id."""
    online = (Presence.select(Presence.subject_id).where(
        (Presence.kind == Presence.AGENT) & (Presence.workspace_id == workspace_id)
        & (Presence.seen_at > online_since)))
    members = dict(Membership.select(Membership.user, fn.COALESCE(MemberLimit.max_open, 0))
                   .join(MemberLimit, JOIN.LEFT_OUTER,
                         on=(MemberLimit.membership == Membership.id))
                   .where((Membership.workspace == workspace_id) & Membership.user.in_(online))
                   .tuples())
    capped = [user_id for user_id, limit in members.items() if limit]
    if capped:
        open_counts = dict(Conversation.select(Conversation.assignee, fn.COUNT(Conversation.id))
                           .where((Conversation.workspace == workspace_id)
                                  & (Conversation.status == Conversation.OPEN)
                                  & Conversation.assignee.in_(capped))
                           .group_by(Conversation.assignee).tuples())
        members = {user_id: limit for user_id, limit in members.items()
                   if not limit or open_counts.get(user_id, 0) < limit}
    return sorted(members)


def rule(workspace_id: int) -> AssignmentRule:
    return (AssignmentRule.get_or_none(AssignmentRule.workspace == workspace_id)
            or AssignmentRule(workspace=workspace_id))


def switch_round_robin(workspace_id: int, enabled: bool) -> None:
    AssignmentRule.insert(workspace=workspace_id, enabled=bool(enabled)).on_conflict(
        conflict_target=[AssignmentRule.workspace],
        update={AssignmentRule.enabled: bool(enabled)}).execute()


def member_limits(workspace_id: int) -> list[tuple[Membership, int]]:
    """Each member with their limit of open conversations (0: none), by name."""
    limit = fn.COALESCE(MemberLimit.max_open, 0).alias("max_open")
    rows = (Membership.select(Membership, User, limit).join(User).switch(Membership)
            .join(MemberLimit, JOIN.LEFT_OUTER, on=(MemberLimit.membership == Membership.id))
            .where(Membership.workspace == workspace_id).order_by(User.name, User.id))
    return [(m, m.max_open) for m in rows]


def set_limit(membership: Membership, max_open) -> int:
    if not isinstance(max_open, int) or not 0 <= max_open <= LIMIT_MAX:
        raise LabelError(LIMIT_HINT, field="max_open")
    MemberLimit.insert(membership=membership.id, max_open=max_open).on_conflict(
        conflict_target=[MemberLimit.membership], update={MemberLimit.max_open: max_open}).execute()
    return max_open

"""Private notes: what agents write in a conversation for their team only, and the teammates a
note names (@mentions).

A note is a Message whose sender is Message.NOTE, written by an agent. The team sees it live
like any message; its visitor never does: every path that shows a conversation to its visitor
(the widget's chat, its stream, the transcript and reply e-mails) keeps to
Message.visible_to_visitor(). A note does not change the inbox: its order, preview, unread
count and status tell where the conversation with the visitor stands, and a note is not part
of that. Nor does it "read" the conversation for the visitor ("Seen" counts visible messages
only), start the visitor's "typing…", or reach automations (they hear visitors' events only).

Mentions: `@` followed by a member's full name with its spaces left out (`@AndyAgent`), or by
their first name alone (`@Andy`) when no other member of the workspace has that first name;
either matched without regard to case. Two members with the same full name are both named by
it. Naming oneself names nobody. Each member named gets a `note_mention` row, stored in the
note's own transaction; once it is committed, those of them with no dashboard of this
workspace open (no fresh Presence row) get one e-mail about the note.
"""

import re
from collections import Counter

from flask import current_app
from peewee import DateTimeField, ForeignKeyField, IntegerField, IntegrityError

from app.accounts.models import Membership, User
from app.chat import live, service
from app.chat.models import Conversation, Message, Presence
from app.chat.service import ChatError
from app.db import BaseModel, database, utcnow
from app.mail import service as mail
from app.widget.models import Site

NOTE_EMPTY = "Write the note first."
NOTE_TEXT_ONLY = "A note is text only: send a file as a reply."

# `@` at the start or after anything but a word character (so an e-mail address names nobody),
# then the name: letters and digits, with . ' ’ - inside it (O'Neil, Jean-Luc).
MENTION = re.compile(r"(?<![\w@])@(\w[\w.'’-]*)")
TRAILING = ".'’-"  # sentence punctuation after a name (`@Andy.`), not part of it


class NoteMention(BaseModel):
    """A member named in a note. Goes with its note (and so with its conversation, workspace
    or the member's account)."""

    message = ForeignKeyField(Message, on_delete="CASCADE", index=False)
    user = ForeignKeyField(User, on_delete="CASCADE")
    workspace_id = IntegerField(index=True)  # the note's: scopes exports
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "note_mention"
        indexes = ((("message", "user"), True),)


NOTE_MODELS = [NoteMention]


# --- who a note names ---------------------------------------------------------------------------


def compact(name: str) -> str:
    """A name as a mention spells it: no spaces, case folded."""
    return "".join(name.split()).casefold()


def names_in(body: str) -> set[str]:
    """Every @name in the text, folded as compact() folds names."""
    return {compact(m.group(1).rstrip(TRAILING)) for m in MENTION.finditer(body)}


def mentioned_members(workspace_id: int, body: str, author_id: int | None = None) -> list:
    """The workspace's members the text names (see the module's doc for the rule), the author
    left out, in user-id order."""
    said = names_in(body)
    if not said:
        return []
    members = list(User.select(User.id, User.name, User.email).join(Membership)
                   .where(Membership.workspace == workspace_id).order_by(User.id))
    firsts = Counter(member.name.split()[0].casefold() for member in members if member.name.split())
    named = []
    for member in members:
        keys = {compact(member.name)}
        words = member.name.split()
        if words and firsts[words[0].casefold()] == 1:
            keys.add(words[0].casefold())
        if member.id != author_id and keys & said:
            named.append(member)
    return named


def mention_ids(message) -> list[int]:
    """The ids of the members a note names, for its fragment's data-mentions (the browser's
    alert reads them). A note just written carries them; one read back asks the table."""
    known = message.__dict__.get("mention_ids")
    if known is None:
        known = message.__dict__["mention_ids"] = [
            row.user_id for row in NoteMention.select(NoteMention.user)
            .where(NoteMention.message == message.id).order_by(NoteMention.user)]
    return known


# --- writing a note -----------------------------------------------------------------------------


def post_note(conversation: Conversation, user: User, body: str, has_file: bool = False,
              client_id: str = "") -> Message:
    """An agent's private note in `conversation`, with its mentions. A retry of a post already
    stored (same `client_id`) returns that note (`replayed`) and stores and sends nothing.
    Refusals are ChatErrors and change nothing."""
    earlier = Message.sent_before(conversation.id, Message.NOTE, client_id)
    if earlier:
        return earlier
    if has_file:
        raise ChatError(NOTE_TEXT_ONLY)
    if not (body or "").strip():
        raise ChatError(NOTE_EMPTY, field="body")
    body = service.check_body(body, False)
    named = mentioned_members(conversation.workspace_id, body, user.id)
    try:
        with database.atomic():
            message = service._add_message(conversation, Message.NOTE, body, None, author=user,
                                           client_id=client_id)
            if named:
                NoteMention.insert_many([
                    {"message": message.id, "user": member.id,
                     "workspace_id": conversation.workspace_id, "created_at": message.created_at}
                    for member in named]).execute()
    except IntegrityError:
        # Stored meanwhile by the same post sent twice at once (the unique client id index).
        earlier = Message.sent_before(conversation.id, Message.NOTE, client_id)
        if not earlier:
            raise
        return earlier
    message.__dict__["mention_ids"] = [member.id for member in named]
    message.event.conversation = conversation  # the stream renders from memory (live.publish)
    service._publish([message.event])
    if named:
        # Only once committed: an e-mail must never tell of a note that was taken back.
        live.after_commit(lambda: email_the_away(message.id))
    return message


# --- telling those who are away -----------------------------------------------------------------


def away_among(workspace_id: int, user_ids: list[int]) -> set[int]:
    """Those of `user_ids` with no dashboard stream of this workspace open (no fresh Presence
    row): they would not see the note arrive."""
    since = utcnow() - service.PRESENCE_FRESH
    here = {row.subject_id for row in Presence.select(Presence.subject_id).where(
        (Presence.kind == Presence.AGENT) & (Presence.workspace_id == workspace_id)
        & Presence.subject_id.in_(user_ids) & (Presence.seen_at > since))}
    return set(user_ids) - here


def email_the_away(message_id: int) -> int:
    """E-mail each member the note names who is away, once (called once, after the note's
    commit); how many e-mails were stored. A note deleted meanwhile sends nothing."""
    note = (Message.select(Message, Conversation, Site).join(Conversation).join(Site)
            .where((Message.id == message_id) & (Message.sender == Message.NOTE)).first())
    if note is None:
        return 0
    conversation = note.conversation
    mentions = list(NoteMention.select(NoteMention, User).join(User)
                    .where(NoteMention.message == message_id).order_by(NoteMention.user))
    away = away_among(conversation.workspace_id, [m.user_id for m in mentions])
    author = note.author.name if note.author else "A former agent"
    url = f"{current_app.config['BASE_URL']}/dashboard/conversations/{conversation.id}#msg-{note.id}"
    sent = 0
    for mention in mentions:
        if mention.user_id in away:
            sent += bool(mail.send(
                mention.user.email, "mention",
                f"{author} mentioned you in a note on {conversation.site.name}",
                author=author, note=note, site=conversation.site, conversation=conversation,
                url=url))
    return sent

"""An agent's alerts while the dashboard is open in a tab they are not looking at: a desktop
notification and a short sound for a new conversation, a visitor's message in a conversation
assigned to them, and a teammate's note that mentions them (never for their own messages).

The server renders each chat event once for the whole workspace (app/chat/render.py), so it
cannot decide per agent; the browser does (static/js/alerts.js), from the event's fragments
and the agent's choices, which every dashboard page carries (templates/accounts/_alert_prefs.html).
Those choices are stored here, one row per person: sound on or off, notifications on or off,
and the sites they hear nothing from. No row: both on, nothing muted."""

from dataclasses import dataclass
from datetime import timedelta

from peewee import BooleanField, DateTimeField, ForeignKeyField, TextField

from app.accounts.models import Membership, User
from app.chat import service as chat_service
from app.chat.models import Message
from app.db import BaseModel, utcnow
from app.errors import RuleError
from app.widget.models import Site

NOT_OURS = "Choose among this workspace's sites."
# A conversation is made in the same transaction as its first message, a moment before it.
OPENING_WITHIN = timedelta(seconds=5)


class AlertSettings(BaseModel):
    """A person's alert choices. Gone with their account."""

    user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE", backref="+")
    sound = BooleanField(default=True)
    notify = BooleanField(default=True)
    # Site ids, space-separated, of every workspace the person is in: a site's events carry
    # its id, so the browser compares as they come (and another workspace's never come).
    muted_sites = TextField(default="")
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "alert_settings"


ALERT_MODELS = [AlertSettings]


@dataclass(frozen=True)
class Alerts:
    sound: bool = True
    notify: bool = True
    muted: frozenset = frozenset()


def _id(word: str) -> int | None:
    word = (word or "").strip()
    return int(word) if word.isascii() and word.isdigit() else None


def _ids(text: str) -> frozenset:
    return frozenset(site_id for site_id in map(_id, text.split()) if site_id is not None)


def settings_of(user_id: int) -> Alerts:
    row = AlertSettings.get_or_none(AlertSettings.user == user_id)
    if row is None:
        return Alerts()
    return Alerts(sound=row.sound, notify=row.notify, muted=_ids(row.muted_sites))


def opens_conversation(message, conversation) -> bool:
    """Whether a message is the visitor's first, which opened its conversation (what the
    message's data-opens says). The times rule out all but a conversation's first few seconds
    without asking the database; only then is it asked whether anything came before."""
    return (message.sender == Message.VISITOR
            and message.created_at - conversation.created_at < OPENING_WITHIN
            and chat_service.first_message(message))


def sites_of(workspace_id: int | None) -> list[tuple[int, str]]:
    """(id, name) of the workspace's sites, by name: what a person may mute there."""
    if workspace_id is None:
        return []
    return list(Site.select(Site.id, Site.name).where(Site.workspace == workspace_id)
                .order_by(Site.name, Site.id).tuples())


def _still_theirs(user_id: int, site_ids, but_not: int | None) -> set[int]:
    """Of `site_ids`, the sites still in a workspace the person belongs to, other than
    `but_not`: muted elsewhere, kept as they were."""
    if not site_ids:
        return set()
    theirs = Membership.select(Membership.workspace).where(Membership.user == user_id)
    query = Site.select(Site.id).where(Site.id.in_(list(site_ids)) & Site.workspace.in_(theirs))
    if but_not is not None:
        query = query.where(Site.workspace != but_not)
    return {site_id for (site_id,) in query.tuples()}


def save(user_id: int, workspace_id: int | None, *, sound: bool, notify: bool,
         muted: list[str]) -> Alerts:
    """Store a person's choices as the settings form gives them: `muted` are the ids of the
    current workspace's sites to mute (as sent: words). Anything else in `muted` (another
    workspace's site, a word) refuses the whole change, which then changes nothing."""
    allowed = {site_id for site_id, _ in sites_of(workspace_id)}
    chosen = set()
    for word in muted:
        site_id = _id(word)
        if site_id not in allowed:
            raise RuleError(NOT_OURS, field="muted")
        chosen.add(site_id)
    kept = _still_theirs(user_id, settings_of(user_id).muted - allowed, workspace_id)
    text = " ".join(str(site_id) for site_id in sorted(chosen | kept))
    now = utcnow()
    (AlertSettings.insert(user=user_id, sound=sound, notify=notify, muted_sites=text,
                          updated_at=now)
     .on_conflict(conflict_target=[AlertSettings.user],
                  update={AlertSettings.sound: sound, AlertSettings.notify: notify,
                          AlertSettings.muted_sites: text, AlertSettings.updated_at: now})
     .execute())
    return Alerts(sound=sound, notify=notify, muted=frozenset(chosen | kept))

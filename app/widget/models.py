"""The widget's records: the sites it is installed on, the origins their
widget was loaded from, and their visitors."""

import secrets

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from app.accounts.models import Workspace
from app.db import BaseModel, utcnow
from app.widget.names import friendly_name

DEFAULT_LAUNCHER_LABEL = "Chat with us"


def new_site_key() -> str:
    return "site_" + secrets.token_urlsafe(12)


class Site(BaseModel):
    workspace = ForeignKeyField(Workspace, backref="sites", on_delete="CASCADE")
    name = CharField(max_length=120)
    site_key = CharField(max_length=64, unique=True, default=new_site_key)
    allowed_origins = TextField(default="")  # one origin a line: scheme://host[:port]
    greeting = CharField(max_length=300, default="Hi! How can we help?")
    accent_color = CharField(max_length=7, default="#4338ca")
    # Away mode keeps the visitor's message and then asks for an e-mail (issue 13): the
    # default says so (a site's own text is its owner's).
    away_message = CharField(max_length=300, default="Nobody from the team is here right now. "
                             "Write anyway: we read every message and answer by e-mail.")
    retention_days = IntegerField(default=180)
    enabled = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    launcher_label = CharField(max_length=40, default=DEFAULT_LAUNCHER_LABEL)  # migration 13
    # The loader then waits for the page's Lumnar.start() (the visitor's consent) before it
    # shows anything or touches storage (migration 13).
    consent_required = BooleanField(default=False)

    @property
    def origins(self) -> list[str]:
        return [o for o in self.allowed_origins.split() if o]

    @classmethod
    def for_workspace(cls, workspace):
        return cls.select().where(cls.workspace == workspace).order_by(cls.name)


class OriginSeen(BaseModel):
    """A page origin a site's widget was asked to load on, allowed or refused: one row per site
    and origin, with the last time and a count since the answer last changed (so the site's
    page can say when the widget last loaded from each allowed origin, and which origins tried
    and were refused lately). Written at most once a minute per origin and process
    (app/widget/service.py); refused origins go after 7 days, at most 50 a site are kept."""

    site = ForeignKeyField(Site, backref="origins_seen", on_delete="CASCADE")
    origin = CharField(max_length=300)
    allowed = BooleanField()
    loads = IntegerField(default=0)
    last_seen_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "widget_origin_seen"
        indexes = ((("site", "origin"), True),)


class Visitor(BaseModel):
    site = ForeignKeyField(Site, backref="visitors", on_delete="CASCADE")
    public_id = CharField(max_length=32, unique=True, default=lambda: secrets.token_urlsafe(16))
    name = CharField(max_length=120, default="")
    email = CharField(max_length=254, default="")
    first_page_url = CharField(max_length=2000, default="")
    first_seen_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)

    @property
    def label(self) -> str:
        """What every screen calls the visitor: their name, else their e-mail, else their
        friendly name ("Calm Otter", from the public id: the same everywhere, every time)."""
        return self.name or self.email or friendly_name(self.public_id)

"""Usage insight's records: counters per day, and the people who asked not to be counted.

A counter row is a day, a kind ("page" or "event"), a name (a route's endpoint name or one of
the fixed feature events) and a number. It has no column that could hold who, from where or
with what: no user or workspace id, no IP address, no user agent, no URL."""

from peewee import CharField, CompositeKey, DateField, DateTimeField, ForeignKeyField, IntegerField

from app.accounts.models import User
from app.db import BaseModel, utcnow


class InsightCount(BaseModel):
    day = DateField()  # UTC
    kind = CharField(max_length=8)  # "page" or "event"
    name = CharField(max_length=80)
    count = IntegerField(default=0)

    class Meta:
        table_name = "insight_count"
        # The key the counting upsert meets (ON CONFLICT ("day", "kind", "name")).
        primary_key = CompositeKey("day", "kind", "name")


class InsightObjection(BaseModel):
    """A person who objected to being counted. Gone with their account."""

    user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE", backref="+")
    objected_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "insight_objection"


INSIGHT_MODELS = [InsightCount, InsightObjection]

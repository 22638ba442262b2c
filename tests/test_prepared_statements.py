"""app.db.Prepared against a real SQLite file: rows come back as peewee itself would give them
(joined models nested, values converted), tuples and scalars too, and nothing of it leans on
peewee's private API."""

import ast
import inspect
import re
from datetime import datetime

import peewee
import pytest
from peewee import SQL, fn
from playhouse.shortcuts import model_to_dict

import app.db as db_module
from app.chat import service
from app.chat.models import ChatEvent, Conversation, Message
from app.chat.service import LAST_EVENT
from app.db import Prepared, connection, database
from app.widget import service as widget_service
from app.widget.models import Site, Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    WidgetVisitor,
    conversation_fixture,
    online_fixture,
    site_fixture,
    visitor_fixture,
    ws_fixture,
)


def joined(where):
    return (Conversation.select(Conversation, Visitor, Site).join(Visitor)
            .switch(Conversation).join(Site).where(where))


IN_WORKSPACE = Prepared(lambda ws: joined(Conversation.workspace == ws).order_by(Conversation.id))


def fields(instance) -> dict:
    return model_to_dict(instance, recurse=False)


class Statements:
    """Counts the statements run on the database while it is in use."""

    def __init__(self, monkeypatch):
        self.sql = []
        run = database.execute_sql

        def counting(sql, params=None, *args, **kwargs):
            self.sql.append(sql)
            return run(sql, params, *args, **kwargs)

        monkeypatch.setattr(database.obj, "execute_sql", counting)  # the engine behind the proxy


def second_conversation(app, site):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("And a second question").status_code == 200
    return guest.conversation()


def test_joined_rows_are_the_model_with_its_visitor_and_site_built_from_the_same_row(
        app, site, conversation, monkeypatch):
    with connection():
        expected = joined(Conversation.id == conversation.id).get()  # peewee's own reading
        statements = Statements(monkeypatch)
        conv = service.CONVERSATION.first(conversation.id)
        visitor, site_row = conv.visitor, conv.site
        assert len(statements.sql) == 1  # the visitor and site came with the row

    assert type(conv) is Conversation and type(visitor) is Visitor and type(site_row) is Site
    assert fields(conv) == fields(expected)
    assert fields(visitor) == fields(expected.visitor)
    assert fields(site_row) == fields(expected.site)
    assert visitor.site is site_row  # the visitor's own key to the same site row
    # Values as the fields read them, not SQLite's text and integers.
    assert isinstance(conv.created_at, datetime) and isinstance(conv.last_activity_at, datetime)
    assert isinstance(visitor.first_seen_at, datetime) and isinstance(site_row.created_at, datetime)
    assert conv.over_limit is False and conv.away_pending is False and site_row.enabled is True
    assert conv.status == Conversation.OPEN and site_row.name == site.name
    assert conv.away_notice_at is None
    assert conv.visitor_id == visitor.id and conv.site_id == site_row.id


def test_rows_give_every_row_and_first_none_when_there_is_none(app, ws, site, conversation):
    other = second_conversation(app, site)
    with connection():
        rows = IN_WORKSPACE.rows(ws)
        expected = list(joined(Conversation.workspace == ws).order_by(Conversation.id))
        assert isinstance(rows, list) and [c.id for c in rows] == [conversation.id, other.id]
        for got, want in zip(rows, expected, strict=True):
            assert fields(got) == fields(want)
            assert fields(got.visitor) == fields(want.visitor)
            assert fields(got.site) == fields(want.site)
        assert rows[0].visitor.id != rows[1].visitor.id  # each row its own visitor
        assert service.WORKSPACE_CONVERSATION.first(conversation.id, ws).id == conversation.id
        assert service.WORKSPACE_CONVERSATION.first(conversation.id, ws + 1000) is None
        assert service.CONVERSATION.first(-1) is None and IN_WORKSPACE.rows(ws + 1000) == []


def test_model_rows_of_one_model(app, site, conversation):
    with connection():
        found = widget_service.SITE_BY_KEY.first(site.site_key)
        message = Message.get(Message.conversation == conversation.id)
        got = service.MESSAGE.first(message.id)
    assert type(found) is Site and fields(found) == fields(site)
    assert found.enabled is True and isinstance(found.created_at, datetime)
    assert fields(got) == fields(message) and got.over_limit is False


def test_a_model_row_saves_what_a_row_peewee_read_saves(app, conversation):
    """Built with Model(**values), a row counts every field as changed; save() writes every
    field anyway as long as no model sets only_save_dirty, which this test also checks."""
    models = [m for m in _all_subclasses(peewee.Model) if m.__module__.startswith("app.")]
    assert Conversation in models and Site in models
    assert [m.__name__ for m in models if m._meta.only_save_dirty] == []

    with connection():
        conv = service.CONVERSATION.first(conversation.id)
        before = fields(Conversation.get_by_id(conversation.id))
        conv.status = Conversation.RESOLVED
        conv.save()
        after = fields(Conversation.get_by_id(conversation.id))
    assert after == {**before, "status": Conversation.RESOLVED}


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_tuples_come_with_each_column_converted_as_peewee_converts_it(
        app, ws, user, site, conversation):
    with connection():
        build = service.INBOX["all"].build
        got = service.INBOX["all"].rows(ws, 10, 0)
        assert got == list(build(ws, 10, 0))  # peewee's own reading of the same query
        (row,) = got
        assert type(row) is tuple and row[0] == conversation.id
        assert isinstance(row[6], datetime) and row[5] is False  # last_activity_at, over_limit
        assert row[-1] is None  # nobody assigned: the outer join's NULL

        visitor = Visitor.get_by_id(conversation.visitor_id)
        assert widget_service.STREAM_SCOPE.first(conversation.id) == (ws, visitor.public_id)
        assert widget_service.STREAM_SCOPE.first(-1) is None

        def summary(conversation_id):
            return (Message.select(fn.MAX(Message.created_at), fn.COUNT(Message.id),
                                   Message.over_limit)
                    .where(Message.conversation == conversation_id).tuples())

        last, count, over = Prepared(summary).first(conversation.id)
        assert (last, count, over) == summary(conversation.id).get()
        assert isinstance(last, datetime) and count == 1 and over is False


def test_scalars(app, ws, online, conversation):
    with connection():
        assert service.UNREAD_TOTAL.scalar(ws) == (
            Conversation.select(fn.COUNT(SQL("*")))
            .where((Conversation.workspace == ws) & (Conversation.unread_count > 0)).scalar())
        assert service.UNREAD_TOTAL.scalar(ws) == 1
        assert service.agents_online(ws) is True  # SQL("1") LIMIT 1, with a datetime argument
        assert service.visitor_connected(conversation.id) is False
        last = ChatEvent.select(fn.MAX(ChatEvent.id)).where(ChatEvent.workspace_id == ws).scalar()
        assert LAST_EVENT.scalar(ws) == last and last
        assert LAST_EVENT.scalar(ws + 1000) is None


def test_shapes_rows_cannot_build_are_refused_and_scalar_still_answers(app, ws, conversation):
    with connection():
        # One field of ChatEvent: a model built from it would carry the other fields' defaults.
        with pytest.raises(ValueError, match="not selected whole"):
            LAST_EVENT.rows(ws)
        with pytest.raises(ValueError, match="not selected whole"):
            LAST_EVENT.first(ws)
        assert LAST_EVENT.scalar(ws)
        as_dicts = Prepared(lambda c: Conversation.select().where(Conversation.id == c).dicts())
        with pytest.raises(ValueError, match="tuples"):
            as_dicts.rows(conversation.id)
        assert as_dicts.scalar(conversation.id) == conversation.id


PRIVATE_OK = {"_ready", "_prepare", "_cursor"}  # Prepared's own


def test_prepared_rows_use_no_private_peewee_api(app, ws, site, online, conversation,
                                                 monkeypatch):
    """The promise of app.db.Prepared: rows are built with peewee's public API only. With
    every `_get_cursor_wrapper` taken off peewee's classes, peewee itself can no longer read a
    row, and Prepared still gives every shape. (The statements are prepared first: preparing
    asks peewee, once and through its public query.execute(), what a row of the query is.)"""
    read = set()
    for part in (Prepared, db_module._NullRow, db_module._converter, db_module._row_maker,
                 db_module._model_maker):
        read |= {node.attr for node in ast.walk(ast.parse(inspect.getsource(part)))
                 if isinstance(node, ast.Attribute) and re.match(r"_(?!_)", node.attr)}
    assert read == PRIVATE_OK  # attributes read or called: none of peewee's private ones

    statements = [service.CONVERSATION, widget_service.SITE_BY_KEY, service.INBOX["all"],
                  widget_service.STREAM_SCOPE, service.UNREAD_TOTAL, IN_WORKSPACE]
    with connection():
        for statement in statements:
            statement._ready or statement._prepare()
        wrapped = [cls for cls in vars(peewee).values()
                   if isinstance(cls, type) and "_get_cursor_wrapper" in vars(cls)]
        assert peewee._ModelQueryHelper in wrapped
        for cls in wrapped:
            monkeypatch.delattr(cls, "_get_cursor_wrapper")
        with pytest.raises(AttributeError):
            Conversation.get_by_id(conversation.id)  # peewee's own reading is gone

        conv = service.CONVERSATION.first(conversation.id)
        assert conv.id == conversation.id and conv.visitor.id == conversation.visitor_id
        assert conv.site.name == site.name and isinstance(conv.created_at, datetime)
        assert widget_service.SITE_BY_KEY.first(site.site_key).id == site.id
        assert [c.id for c in IN_WORKSPACE.rows(ws)] == [conversation.id]
        (row,) = service.INBOX["all"].rows(ws, 10, 0)
        assert row[0] == conversation.id and isinstance(row[6], datetime)
        assert widget_service.STREAM_SCOPE.first(conversation.id)[0] == ws
        assert service.UNREAD_TOTAL.scalar(ws) == 1

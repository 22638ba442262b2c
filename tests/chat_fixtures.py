"""Shared pieces for the chat tests: sites, widget visitors speaking the real visitor API,
a second workspace, tiny real files, and ways to look at what the database holds.

A test module imports the fixtures it uses by their function names (`site_fixture` is the
fixture `site`), so that the test's parameters do not shadow the imported names.
"""

import base64
import struct
import zlib

import pytest
from werkzeug.test import stream_encode_multipart

from app.accounts.models import Membership, User
from app.chat import service
from app.chat.models import CHAT_MODELS, Attachment, Conversation, Message, Presence
from app.db import connection, database, dialect, utcnow
from app.widget import service as widget_service
from app.widget.models import Site, Visitor
from tests.conftest import Client, db_state, log_in, make_user

ORIGIN = "https://shop.example.com"
TOKEN_HEADER = "X-Lumnar-Visitor"
OTHER_EMAIL = "rival@example.com"
AGENT_EMAIL = "agent@example.com"


# --- tiny real files -------------------------------------------------------------------------


def png_bytes() -> bytes:
    """A valid 1x1 PNG, built chunk by chunk."""

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////"
    "////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgB"
    "AQABPxA=")
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
TXT = "Order 1234: two mugs, one teapot. Merci, ça va.\n".encode()


# --- the database ----------------------------------------------------------------------------


def chat_state() -> dict:
    """Every row of every chat table, to prove that a refused request changed nothing."""
    return db_state(*CHAT_MODELS)


def count(model, *where) -> int:
    with connection():
        query = model.select()
        if where:
            query = query.where(*where)
        return query.count()


def index_search() -> None:
    """Index every message written so far, as the worker's steps and a search do."""
    from app.chat import service

    with connection():
        while service.index_new_messages():
            pass


# The search index's own answer for one word, in each engine's words.
INDEX_HITS = {"sqlite": "SELECT rowid FROM message_fts WHERE message_fts MATCH ?",
              "postgres": "SELECT id FROM message WHERE search @@ to_tsquery('lumnar_search', %s)"}


def fts_hits(word: str) -> list[int]:
    """Message ids the search index holds for `word` (straight from the index: message_fts on
    SQLite, the generated column on PostgreSQL), once the messages written so far are indexed
    (on SQLite they are indexed after they are written)."""
    index_search()
    with connection():
        term = word if dialect() == "postgres" else '"' + word + '"'
        rows = database.execute_sql(INDEX_HITS[dialect()], (term,))
        return sorted(r[0] for r in rows.fetchall())


def get(model, *where):
    with connection():
        return model.get(*where)


def workspace_id_of(email: str) -> int:
    """The workspace the user with `email` owns."""
    with connection():
        return (Membership.select(Membership.workspace).join(User)
                .where((User.email == email) & (Membership.role == Membership.OWNER)).get()
                .workspace_id)


def make_site(app, workspace_id: int, name="Shop", origins=ORIGIN, **fields) -> Site:
    with app.app_context(), connection():
        site = Site(workspace=workspace_id)
        values = {"name": name, "allowed_origins": origins}
        values.update(fields)
        return widget_service.save_site(site, **values)


def set_agent_online(workspace_id: int, user_id: int = 0) -> None:
    """What an open dashboard stream records: the team counts as online (no away mode)."""
    with connection():
        Presence.create(kind=Presence.AGENT, workspace_id=workspace_id, subject_id=user_id,
                        stream_id=f"test-{workspace_id}-{user_id}", seen_at=utcnow())


def set_visitor_connected(conversation_id: int, workspace_id: int) -> None:
    with connection():
        Presence.create(kind=Presence.VISITOR, workspace_id=workspace_id,
                        subject_id=conversation_id, stream_id=f"test-v-{conversation_id}",
                        seen_at=utcnow())


# --- a visitor, through the widget's API -----------------------------------------------------


class WidgetVisitor:
    """One browser's widget: its own test client and the token the iframe keeps."""

    def __init__(self, app, site_key: str, token: str):
        self.app = app
        self.site_key = site_key
        self.token = token
        self.http = app.test_client()

    @classmethod
    def arrive(cls, app, site_key: str, page="https://shop.example.com/pricing"):
        http = app.test_client()
        response = http.post(f"/widget/{site_key}/visitors", data={"page": page})
        assert response.status_code == 200, response.get_data(as_text=True)
        return cls(app, site_key, response.get_json()["token"])

    @property
    def headers(self):
        return {TOKEN_HEADER: self.token, "HX-Request": "true"}

    def url(self, tail: str) -> str:
        return f"/widget/{self.site_key}/{tail}"

    def chat(self):
        return self.http.get(self.url("chat"), headers=self.headers)

    def send(self, body="", file=None, email=None, name=None, page=None):
        """`file` is (bytes, filename, claimed content type). Sent through the ASGI app the web
        process serves: the chat writes are Starlette routes (app/chat/wire.py)."""
        data = {"body": body}
        if email is not None:
            data["email"] = email
        if name is not None:
            data["name"] = name
        if page is not None:
            data["page"] = page
        files = {"file": (file[1], file[0], file[2])} if file is not None else None
        return asgi_request(self.app, "POST", self.url("messages"), data=data, files=files,
                            headers=self.headers)

    def post_multipart(self, url, data):
        # Encoded in memory: Werkzeug's test client would spool a large body to a temporary
        # file that it never closes (a ResourceWarning, an error in this suite).
        stream, length, boundary = stream_encode_multipart(data, use_tempfile=False)
        with stream:
            return self.http.post(url, input_stream=stream, content_length=length,
                                  content_type=f'multipart/form-data; boundary="{boundary}"',
                                  headers=self.headers)

    def typing(self):
        return self.http.post(self.url("typing"), headers=self.headers)

    def profile(self, name="", email=""):
        return self.http.post(self.url("profile"), data={"name": name, "email": email},
                              headers=self.headers)

    def transcript(self):
        return self.http.post(self.url("transcript"), headers=self.headers)

    def delete(self):
        return self.http.post(self.url("delete"), headers=self.headers)

    def record(self) -> Visitor:
        with self.app.app_context(), connection():
            return widget_service.visitor_from_token(Site.get(Site.site_key == self.site_key), self.token)

    def conversation(self) -> Conversation | None:
        with self.app.app_context(), connection():
            return service.current_conversation(self.record())


def text(response) -> str:
    return response.get_data(as_text=True)


# --- the chat writes, through the ASGI app ----------------------------------------------------


class AsgiAnswer:
    """An httpx answer that reads like a Flask test response (status_code, headers, get_data)."""

    def __init__(self, answer):
        self.raw = answer
        self.status_code = answer.status_code
        self.headers = answer.headers
        self.text = answer.text

    def get_data(self, as_text=False):
        return self.raw.text if as_text else self.raw.content

    def get_json(self):
        return self.raw.json()


def asgi_root(app):
    """The ASGI root the web process serves, built once per test app."""
    from app.asgi import build

    if "test_asgi_root" not in app.extensions:
        app.extensions["test_asgi_root"] = build(app)
    return app.extensions["test_asgi_root"]


def asgi_request(app, method, path, cookie=None, data=None, files=None, headers=None,
                 base_url="http://localhost") -> AsgiAnswer:
    import httpx

    async def send():
        transport = httpx.ASGITransport(app=asgi_root(app))
        cookies = {app.config["SESSION_COOKIE_NAME"]: cookie} if cookie else None
        async with httpx.AsyncClient(transport=transport, base_url=base_url,
                                     cookies=cookies) as http:
            return await http.request(method, path, data=data, files=files,
                                      headers=headers or {})

    return AsgiAnswer(run_async(send()))


def reply(client, conversation_id, data, htmx=False, csrf=True, file=None, headers=None):
    """An agent's reply from a signed-in test client, through the ASGI app (as a browser posts
    it: the page's token in the form, or in X-CSRFToken for htmx)."""
    app = client.raw.application
    data = dict(data)
    if csrf and "csrf_token" not in data:
        data["csrf_token"] = client.csrf()
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    files = {"file": (file[1], file[0], file[2])} if file is not None else None
    return asgi_request(app, "POST", f"/dashboard/conversations/{conversation_id}/messages",
                        cookie.value if cookie else None, data, files,
                        {**({"HX-Request": "true"} if htmx else {}), **(headers or {})})


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(name="ws")
def ws_fixture(user) -> int:
    """The logged-in owner's workspace id."""
    return workspace_id_of(user.email)


@pytest.fixture(name="site")
def site_fixture(app, ws) -> Site:
    return make_site(app, ws)


@pytest.fixture(name="online")
def online_fixture(ws):
    """An agent of the owner's workspace has the dashboard open: messages need no e-mail."""
    set_agent_online(ws)


@pytest.fixture(name="visitor")
def visitor_fixture(app, site) -> WidgetVisitor:
    return WidgetVisitor.arrive(app, site.site_key)


@pytest.fixture(name="conversation")
def conversation_fixture(visitor, online) -> Conversation:
    """An open conversation started by `visitor` with one message."""
    response = visitor.send("Hello, do you ship to Iceland?")
    assert response.status_code == 200, text(response)
    return visitor.conversation()


@pytest.fixture(name="rival")
def rival_fixture(app):
    """Another workspace: its owner (logged in on their own client), site, visitor and a
    conversation with one message, attachment included."""
    rival_user = make_user(app, email=OTHER_EMAIL, name="Rita Rival")
    client = Client(app.test_client())
    log_in(client, OTHER_EMAIL)
    rival_ws = workspace_id_of(OTHER_EMAIL)
    rival_site = make_site(app, rival_ws, name="Rival shop", origins="https://rival.example.org")
    set_agent_online(rival_ws, rival_user.id)
    guest = WidgetVisitor.arrive(app, rival_site.site_key)
    response = guest.send("Rival secret about teapots", file=(png_bytes(), "rival.png", "image/png"))
    assert response.status_code == 200, text(response)
    conv = guest.conversation()
    with connection():
        attachment = Attachment.select().join(Message).where(Message.conversation == conv.id).get()
    return {"user": rival_user, "client": client, "ws": rival_ws, "site": rival_site,
            "visitor": guest, "conversation": conv, "attachment": attachment}


@pytest.fixture(name="agent")
def agent_fixture(app, user, ws):
    """A second member of the owner's workspace with the agent role, logged in there."""
    agent_user = make_user(app, email=AGENT_EMAIL, name="Andy Agent")
    with connection():
        Membership.create(workspace=ws, user=agent_user, role=Membership.AGENT)
    client = Client(app.test_client())
    log_in(client, AGENT_EMAIL)
    response = client.post_form("/dashboard/workspace", {"workspace_id": ws})
    assert response.status_code == 303
    return {"user": agent_user, "client": client}




def run_async(coro):
    """asyncio.run in a thread of its own: the browser tests' Playwright keeps an event loop
    running on the main thread for the whole session, and asyncio.run refuses to nest."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()

"""Every route of both apps, read from their URL maps (Flask's url_map and the Starlette root's
routes), with URL parameters filled from a small real world, so that a test walking them
covers a new route without anyone adding it to a list.

`world(app)` makes that world: the owner (a staff user, so no route refuses for want of
rights) with a site, a visitor, a conversation holding an attachment, a saved reply, a
credential, an automation with a run, a pending invitation, an agent and a second session.
A parameter it has no value for gets a dummy one (1 for numbers, "dummy" otherwise).
"""

import re

import httpx
from starlette.convertors import IntegerConvertor
from starlette.routing import Route

from app.accounts import service as accounts
from app.accounts.models import ACCOUNT_MODELS, Membership, User, UserSession, Workspace
from app.automations import service as automations
from app.automations import vault
from app.automations.models import AUTOMATION_MODELS, AutomationRun
from app.chat.models import CHAT_MODELS, Attachment, Message, SavedReply
from app.db import connection
from app.mail.models import OutboundEmail
from app.staff.models import AuditEntry
from tests.chat_fixtures import (
    AGENT_EMAIL,
    WidgetVisitor,
    make_site,
    png_bytes,
    set_agent_online,
    workspace_id_of,
)
from tests.conftest import Client, db_state, log_in, make_user

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
PLACEHOLDER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def world(app, user) -> dict:
    """The owner's world; `params` maps URL parameter names to real values."""
    with connection():
        User.update(is_staff=True).where(User.id == user.id).execute()
    ws = workspace_id_of(user.email)
    site = make_site(app, ws)
    set_agent_online(ws, user.id)
    visitor = WidgetVisitor.arrive(app, site.site_key)
    answer = visitor.send("Hello, a photo of the mug", file=(png_bytes(), "mug.png", "image/png"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    conversation = visitor.conversation()
    agent = make_user(app, email=AGENT_EMAIL, name="Andy Agent")
    with app.test_request_context(), connection():
        workspace = Workspace.get_by_id(ws)
        membership = Membership.create(workspace=ws, user=agent, role=Membership.AGENT)
        attachment = (Attachment.select().join(Message)
                      .where(Message.conversation == conversation.id).get())
        reply = SavedReply.create(workspace=ws, shortcut="thanks", body="Thank you!")
        credential = vault.store(ws, "Pipedrive", "CRM token", "api_token",
                                 {"token": "crm-token-0a1b2c3d4e5f6a7b-wxyz"})
        automation = automations.create_automation(
            ws, name="Leads to CRM", flow="chat_lead_crm", trigger="chat",
            chat_event="visitor_left_email",
            config={"base_url": "https://crm.example.com/api", "credential": str(credential.id)})
        run = AutomationRun.create(automation=automation, workspace=ws, trigger="manual")
        invitation = accounts.invite(workspace, user, "newcomer@example.com", Membership.AGENT)
    # The owner's second browser: the session that "end this session" in the settings ends.
    other_browser = Client(app.test_client())
    log_in(other_browser)
    with connection():
        other_session = (UserSession.select().where(UserSession.user == user.id)
                         .order_by(UserSession.id.desc()).get())
    return {
        "ws": ws, "site": site, "visitor": visitor, "conversation": conversation,
        "params": {
            "workspace_id": ws, "site_id": site.id, "site_key": site.site_key,
            "conversation_id": conversation.id, "attachment_id": attachment.id,
            "reply_id": reply.id, "credential_id": credential.id,
            "automation_id": automation.id, "run_id": run.id,
            "invitation_id": invitation.id, "membership_id": membership.id,
            "session_id": other_session.id, "filename": "css/app.css",
        },
    }


def dummy(name: str, numeric: bool, params: dict):
    return params.get(name, 1 if numeric else "dummy")


def flask_routes(flask_app, params: dict, methods=ALL_METHODS) -> list[tuple[str, str, str]]:
    """(path, method, endpoint) for every rule of Flask's URL map."""
    adapter = flask_app.url_map.bind("localhost")
    found = []
    for rule in flask_app.url_map.iter_rules():
        # "<int:name>", "<path:name>", "<name>": the converter decides what a dummy looks like.
        converters = {name: conv for conv, name in PLACEHOLDER.findall(rule.rule)}
        values = {name: dummy(name, converters[name] == "int", params) for name in rule.arguments}
        path = adapter.build(rule.endpoint, values)
        found += [(path, m, rule.endpoint) for m in sorted(rule.methods & set(methods))]
    return found


def starlette_routes(root, params: dict, methods=ALL_METHODS) -> list[tuple[str, str, str]]:
    """(path, method, name) for every Route of the Starlette root inside the header layer;
    a route without a method list (an ASGI app) takes every method."""
    found = []
    for route in root.app.routes:
        if not isinstance(route, Route):
            continue  # the Mount("/") is Flask: walked through its own URL map
        values = {name: dummy(name, isinstance(conv, IntegerConvertor), params)
                  for name, conv in route.param_convertors.items()}
        path = route.path_format.format(**values)
        allowed = route.methods or set(ALL_METHODS)
        found += [(path, m, route.name) for m in sorted(allowed & set(methods))]
    return found


def every_route(flask_app, root, params: dict, methods=ALL_METHODS) -> list[tuple[str, str, str]]:
    """Both apps' routes, one entry per (path, method): a Starlette route that shadows a Flask
    rule (the hot writes) is kept once, under the Flask endpoint that also answers it."""
    seen, found = set(), []
    for path, method, name in (flask_routes(flask_app, params, methods)
                               + starlette_routes(root, params, methods)):
        if (path, method) not in seen:
            seen.add((path, method))
            found.append((path, method, name))
    return found


def every_row() -> dict:
    """Every row of every product table (accounts, chat, automations): a refused request must
    leave this as it was."""
    return db_state(*ACCOUNT_MODELS, OutboundEmail, *CHAT_MODELS, *AUTOMATION_MODELS, AuditEntry)


def session_cookie(app, client) -> str:
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def asgi_client(root, cookie=None, cookie_name="lumnar_session", base_url="http://localhost"):
    """An httpx client speaking to the ASGI root in process (no server, no lifespan)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=root), base_url=base_url,
                             cookies={cookie_name: cookie} if cookie else None)

"""No unsafe request acts for a signed-in user without their session's own CSRF token, on any
route of either app (Flask's URL map and the Starlette root's routes, so a new route is
covered without anyone adding it here). The few routes without a token are a reviewed list
below, each with the credential that protects it instead and a test that proves it.

Everything is sent through the ASGI app the web process serves, signed in as a staff owner
(so that rights are never what refuses), against a world where every id in a URL is a real
row: a forged request that got through would change the database.
"""

import pytest

from app.asgi import build
from app.widget.models import Visitor
from app.widget.views import TOKEN_HEADER
from tests.chat_fixtures import OTHER_EMAIL, WidgetVisitor, make_site, run_async, workspace_id_of
from tests.conftest import PASSWORD, Client, db_state, log_in, make_user
from tests.route_walk import UNSAFE, asgi_client, every_route, every_row, session_cookie, world

# Fields most of our forms take, so that a forged form that got past the check would act.
PAYLOAD = {
    "name": "Forged name", "email": "forged@example.com", "password": PASSWORD,
    "current_password": PASSWORD, "new_password": "a forged new password",
    "body": "Forged words", "shortcut": "forged", "status": "closed", "assignee": "",
    "workspace_id": "1", "role": "agent", "platform": "Forged", "label": "Forged",
    "kind": "api_token", "secret": "forged-secret", "greeting": "Forged", "away_message": "Forged",
    "allowed_origins": "https://evil.example", "accent_color": "#000000", "retention_days": "1",
    "timezone": "UTC", "run_log_days": "1", "flow": "chat_lead_crm", "trigger": "manual",
}
SHORT = {"body": "Forged words"}

# The reviewed exemptions: endpoint -> what protects it instead of a CSRF token.
VISITOR_HEADER = "the visitor token in the X-Lumnar-Visitor header (kept in the frame's storage)"
EXEMPT = {
    "hooks.inbound": "the secret in its URL; it reads no cookie",
    "stripe_hooks.webhook": "the Stripe-Signature over the raw body, checked with the endpoint secret; it reads no cookie",
    "widget.visitor_create": "reads no cookie: it makes a new anonymous visitor for whoever asks, "
                             "or gives a signed-in user's own visitor only for the site's HMAC of "
                             "their id, which a forging page cannot make",
    "widget.message_create": VISITOR_HEADER,
    "widget.typing": VISITOR_HEADER,
    "widget.profile_update": VISITOR_HEADER,
    "widget.email_update": VISITOR_HEADER,
    "widget.transcript": VISITOR_HEADER,
    "widget.conversation_delete": VISITOR_HEADER,
    "ratings.rate_conversation": VISITOR_HEADER,
    "unsubscribe.unsubscribe_confirm": "the encrypted token in its URL (one address, one kind of "
                                       "e-mail); RFC 8058 one-click, it reads no cookie",
}


@pytest.fixture
def setting(app, user, smtp):
    """The owner's world, the owner signed in (cookie holding a CSRF secret), and a valid
    token of somebody else's session."""
    found = world(app, user)
    owner = Client(app.test_client())
    log_in(owner)
    owner_token = owner.csrf()  # puts the session's CSRF secret into its cookie
    make_user(app, email=OTHER_EMAIL, name="Rita Rival")
    rival = Client(app.test_client())
    log_in(rival, OTHER_EMAIL)
    found.update(root=build(app), cookie=session_cookie(app, owner), owner_token=owner_token,
                 foreign_token=rival.csrf(), mails=len(smtp.messages))
    return found


def unsafe_routes(app, setting) -> list[tuple[str, str, str]]:
    return every_route(app, setting["root"], setting["params"], methods=UNSAFE)


def post(setting, path, method="POST", data=None, headers=None, cookie=True):
    async def send():
        async with asgi_client(setting["root"], setting["cookie"] if cookie else None) as http:
            return await http.request(method, path, data=data, headers=headers or {})

    return run_async(send())


def test_every_unsafe_route_refuses_a_request_without_the_sessions_own_token(app, setting,
                                                                           smtp):
    foreign = setting["foreign_token"]
    # Plain forms carry every field; htmx posts only a text, as the chat writes'
    # (app/chat/wire.py) htmx forms do.
    htmx = {"HX-Request": "true"}
    forgeries = {
        "no token": (PAYLOAD, {}),
        "no token, htmx": (SHORT, htmx),
        "another session's token": ({**PAYLOAD, "csrf_token": foreign}, {}),
        "another session's token, htmx": (SHORT, {**htmx, "X-CSRFToken": foreign}),
    }
    checked, holes = [], []
    for path, method, endpoint in unsafe_routes(app, setting):
        if endpoint in EXEMPT:
            continue
        before = every_row()
        for forgery, (fields, headers) in forgeries.items():
            answer = post(setting, path, method, data=fields, headers=headers)
            if answer.status_code != 400 or "Form expired" not in answer.text:
                holes.append(f"{method} {path} ({endpoint}), {forgery}: {answer.status_code}")
        if every_row() != before:
            holes.append(f"{method} {path} ({endpoint}) changed the database")
        checked.append(endpoint)
    assert not holes, "\n".join(holes)
    assert len(smtp.messages) == setting["mails"]  # no invitation, reset or change mail went out
    # The walk really covered the areas, staff included (exempting it once passed every test).
    for endpoint in ("staff.automation_update", "staff.automation_delete", "accounts.logout",
                     "chat.conversation_reply", "chat.conversation_delete", "accounts.login",
                     "automations.credential_delete", "accounts.session_end"):
        assert endpoint in checked, endpoint


def test_the_exemptions_are_real_routes(app, setting):
    """A stale entry would hide a renamed route: every exemption names a walked endpoint."""
    walked = {endpoint for _, _, endpoint in unsafe_routes(app, setting)}
    assert set(EXEMPT) <= walked


def widget_routes(app, setting):
    return [(path, method, endpoint) for path, method, endpoint in unsafe_routes(app, setting)
            if EXEMPT.get(endpoint) == VISITOR_HEADER]


def test_visitor_routes_refuse_without_the_visitor_header_whatever_cookie_and_token_come(
        app, setting):
    """A forged cross-site post carries the owner's cookie, and here even their own CSRF token;
    without the visitor's header nothing is done. A token of another site's visitor is refused
    too."""
    other_site = make_site(app, workspace_id_of(OTHER_EMAIL), name="Rival shop",
                           origins="https://rival.example.org")
    stranger = WidgetVisitor.arrive(app, other_site.site_key)
    routes = widget_routes(app, setting)
    assert len(routes) == sum(1 for why in EXEMPT.values() if why == VISITOR_HEADER)
    for path, method, endpoint in routes:
        for headers in ({"HX-Request": "true"}, {"HX-Request": "true", TOKEN_HEADER: stranger.token}):
            before = every_row()
            answer = post(setting, path, method, headers=headers,
                          data={**PAYLOAD, "csrf_token": setting["owner_token"]})
            assert answer.status_code == 401, (endpoint, headers, answer.status_code)
            assert every_row() == before, endpoint


def test_no_other_origin_may_send_the_visitor_header(app, setting):
    """A custom header makes browsers ask first (a CORS preflight); no widget route says yes,
    so no other origin's page can send a visitor's token, even one it had stolen."""
    for path, _, endpoint in widget_routes(app, setting):
        answer = post(setting, path, "OPTIONS", cookie=False, headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": TOKEN_HEADER.lower()})
        assert not any(name.lower().startswith("access-control-allow") for name in answer.headers), \
            endpoint


def test_a_new_visitor_is_made_for_anyone_and_nothing_of_the_session_is_touched(app, setting):
    before = every_row()
    answer = post(setting, f"/widget/{setting['site'].site_key}/visitors",
                  data={"page": "https://evil.example/"})
    assert answer.status_code == 200 and answer.json()["token"]
    assert "set-cookie" not in answer.headers
    after = every_row()
    assert len(after["Visitor"]) == len(before["Visitor"]) + 1
    assert {k: v for k, v in after.items() if k != "Visitor"} == {
        k: v for k, v in before.items() if k != "Visitor"}
    with_no_cookie = db_state(Visitor)
    assert with_no_cookie["Visitor"][-1]["site"] == setting["site"].id


def test_an_inbound_webhook_needs_its_secret_and_ignores_the_session(app, setting):
    before = every_row()
    answer = post(setting, "/hooks/not-the-secret", data={"lead": "forged"},
                  headers={"X-CSRFToken": setting["owner_token"]})
    assert answer.status_code == 404
    assert every_row() == before

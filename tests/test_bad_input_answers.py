"""Bad input gets a clear 4xx and changes nothing, never a 500: page numbers and ids past
SQLite's integers, schedules that never run, and request bodies whatever their framing
(chunked bodies are read whole, and refused with 413 past the limit, on every route).

Bodies go through the real ASGI app (httpx's ASGITransport) and through a live uvicorn on
loopback; httpx sends a generator body with Transfer-Encoding: chunked."""

import json
import re
from datetime import timedelta

import httpx
import pytest
from starlette.requests import Request

from app.accounts.models import User, Workspace
from app.asgi import build
from app.automations import service
from app.automations.models import Automation, AutomationRun
from app.chat import streams
from app.db import connection, database, utcnow
from app.paging import LARGEST_ID, MAX_PAGE
from tests.chat_fixtures import (  # noqa: F401  (fixtures by name)
    conversation_fixture,
    online_fixture,
    run_async,
    site_fixture,
    visitor_fixture,
    workspace_id_of,
    ws_fixture,
)
from tests.conftest import PASSWORD, Client, db_state, log_in, make_user
from tests.served import LiveServer

pytestmark = pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)

HUGE = "99999999999999999999"  # past SQLite's 64-bit integers
BIGGEST = str(LARGEST_ID)  # 9223372036854775807: fits, but no page is that far
JUST_PAST = str(LARGEST_ID + 1)  # as many digits as the largest, one more than it
MB = 1024 * 1024


# --- page numbers ----------------------------------------------------------------------------

PAGED = ["/dashboard/inbox", "/dashboard/automations/runs", "/dashboard/access-log"]
# Whole numbers too far back for any page: 404.
TOO_FAR = [HUGE, BIGGEST, JUST_PAST, str(MAX_PAGE + 1), "9" * 5000]
# Not page numbers at all: the first page, as before.
NOT_NUMBERS = ["", "0", "-1", "abc", "1e3", "٣", "%EF%BC%91", "1.5"]


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize("page", TOO_FAR)
def test_a_page_too_far_back_is_404_on_every_paged_route(auth, path, page):
    assert auth.get(f"{path}?page={page}").status_code == 404


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize("page", NOT_NUMBERS)
def test_a_page_that_is_not_a_number_shows_the_first_page(auth, path, page):
    assert auth.get(f"{path}?page={page}").status_code == 200


@pytest.mark.parametrize("path", PAGED)
def test_the_last_allowed_page_still_answers(auth, path):
    assert auth.get(f"{path}?page={MAX_PAGE}").status_code == 200


@pytest.mark.parametrize("automation", [HUGE, BIGGEST, "0"])
def test_the_runs_filter_by_an_automation_no_row_can_have_is_404(auth, automation):
    assert auth.get(f"/dashboard/automations/runs?automation={automation}").status_code == 404


# --- ids in paths: every route with an <int:...> part ----------------------------------------


@pytest.fixture
def staff_owner(app):
    """The owner of a workspace who is also staff: every route lets them in, so an id that
    no row can have gets as far as it ever could."""
    user = make_user(app)
    with connection():
        User.update(is_staff=True).where(User.id == user.id).execute()
    client = Client(app.test_client())
    log_in(client)
    return client


def int_routes(app):
    """(rule, names of its <int:...> parts) for every route that has any."""
    for rule in app.url_map.iter_rules():
        names = [name for name in rule.arguments if f"<int:{name}>" in rule.rule]
        if names:
            yield rule, names


@pytest.mark.parametrize("huge", [HUGE, BIGGEST, JUST_PAST])
def test_every_route_with_an_id_no_row_can_have_is_404(app, staff_owner, huge):
    with connection():
        ws = Workspace.select().first().id
    checked = 0
    for rule, names in int_routes(app):
        for name in names:
            # The named id is huge; any other id is the owner's own workspace (a real row).
            path = rule.rule
            for arg in rule.arguments:
                value = huge if arg == name else str(ws)
                path = re.sub(rf"<(?:[a-z]+:)?{arg}>", value, path)
            if "GET" in rule.methods:
                response = staff_owner.get(path)
            else:
                response = staff_owner.post_form(path, {})
            # (werkzeug says 405 when another method's route has the same path: still a 4xx.)
            allowed = (404, 405) if huge == JUST_PAST and "GET" not in rule.methods else (404,)
            assert response.status_code in allowed, (path, response.status_code)
            checked += 1
    assert checked >= 20  # the walk found the app's routes


@pytest.mark.parametrize("huge", [HUGE, BIGGEST, JUST_PAST])
def test_a_hot_reply_to_a_conversation_id_no_row_can_have_is_404(app, auth, conversation, huge):
    # The chat's hot path answers some replies without Flask: it must not query with it either.
    before = db_state()

    name = app.config["SESSION_COOKIE_NAME"]
    token = auth.csrf()  # first: the page it comes from may send the session cookie again

    async def post():
        transport = httpx.ASGITransport(app=build(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     cookies={name: auth.get_cookie(name).value}) as http:
            return await http.post(f"/dashboard/conversations/{huge}/messages",
                                   data={"body": "hello"},
                                   headers={"HX-Request": "true", "X-CSRFToken": token})

    assert run_async(post()).status_code == 404
    assert db_state() == before


# --- ids in forms ----------------------------------------------------------------------------


def test_assigning_a_conversation_to_an_id_past_sqlites_integers_is_refused(auth, conversation):
    before = db_state()
    response = auth.post_form(f"/dashboard/conversations/{conversation.id}/assign",
                              {"assignee": HUGE})
    assert response.status_code == 422
    assert "Choose a member of this workspace." in response.get_data(as_text=True)
    assert db_state() == before


@pytest.mark.parametrize("value", [HUGE, "-1", "abc", ""])
def test_switching_to_a_workspace_id_no_row_can_have_is_404(auth, value):
    with connection():
        before = db_state(Workspace)
    assert auth.post_form("/dashboard/workspace", {"workspace_id": value}).status_code == 404
    assert db_state(Workspace) == before


def test_a_stream_resumed_from_an_event_id_past_sqlites_integers_replays_from_the_start(
        app, ws, conversation):
    def request(last_event_id: str) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/sse/dashboard",
                        "query_string": b"", "headers": [(b"last-event-id", last_event_id.encode())]})

    for raw in (HUGE, "9" * 5000, "abc", "-4"):
        after = streams.parse_after(request(raw))
        assert after == 0
        with app.app_context():
            assert streams.replay(after, workspace_id=ws)  # the conversation's events
    assert streams.parse_after(request("7")) == 7


# --- schedules -------------------------------------------------------------------------------

TOKEN = "crm-token-0a1b2c3d4e5f6a7b-wxyz"


@pytest.fixture
def staff_and_customer(app):
    from app.automations import vault

    make_user(app)
    ws = workspace_id_of("owner@example.com")
    with app.app_context(), connection():
        cred = vault.store(ws, "Pipedrive", "CRM token", "api_token", {"token": TOKEN})
    make_user(app, email="ada@lumnar.example", name="Ada Staff")
    with connection():
        User.update(is_staff=True).where(User.email == "ada@lumnar.example").execute()
    client = Client(app.test_client())
    log_in(client, email="ada@lumnar.example")
    return client, ws, cred


def scheduled_form(cred_id, cron):
    return {"flow": "chat_lead_crm", "name": "Nightly", "trigger": "schedule", "cron": cron,
            "chat_event": "", "max_attempts": "", "cfg-base_url": "https://crm.example.com/api",
            "cfg-credential": str(cred_id), "cfg-extra": ""}


BAD_SCHEDULES = [
    ("0 0 31 2 *", "would not run twice in the next five years"),  # no 31 February
    ("0 0 30 2 *", "would not run twice in the next five years"),
    ("0 0 31 4,6 *", "would not run twice in the next five years"),
    # cron reads a day with a weekday as "either": every Monday of February, not a Monday 29th.
    ("0 0 29 2 1", "Give a day of the month or a weekday, not both"),
    ("0 9 1-7 * 1", "Give a day of the month or a weekday, not both"),
    ("*/1000000000 * * * *", "The step /1000000000 in the minute field must be from 1 to 59"),
    ("0 */24 * * *", "The step /24 in the hour field must be from 1 to 23"),
    ("0 0 1 */99999999999999999999 *", "in the month field must be from 1 to 11"),
    ("every day at nine", "Not a valid schedule"),
    ("0 0 99999999999999999999 * *", "Not a valid schedule"),
    ("* * * * * *", "Not a valid schedule"),
    ("0 " * 60, "Not a valid schedule"),
]
GOOD_SCHEDULES = ["0 9 * * 1-5", "*/15 * * * *", "0 0 1 1 *", "0 9 * * 1#1", "30 2 L * *",
                  "0 12 15 */3 *", "*/59 * * * *"]


@pytest.mark.parametrize("cron, message", BAD_SCHEDULES)
def test_a_schedule_that_never_or_absurdly_runs_is_refused_beside_the_field(
        staff_and_customer, cron, message):
    staff, ws, cred = staff_and_customer
    before = db_state(Automation, AutomationRun)
    response = staff.post_form(f"/staff/workspaces/{ws}/automations",
                               scheduled_form(cred.id, cron), htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="cron-error">(.*?)</p>', body, re.S)
    assert error, body
    assert message in error.group(1)
    assert db_state(Automation, AutomationRun) == before


@pytest.mark.parametrize("credential", [HUGE, JUST_PAST, "٣", "-1"])
def test_a_credential_id_no_row_can_have_is_refused_beside_the_field(staff_and_customer,
                                                                     credential):
    staff, ws, cred = staff_and_customer
    before = db_state(Automation, AutomationRun)
    form = {**scheduled_form(cred.id, "0 9 * * *"), "cfg-credential": credential}
    response = staff.post_form(f"/staff/workspaces/{ws}/automations", form, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="cfg-credential-error">(.*?)</p>', body, re.S)
    assert error and "Choose a credential." in error.group(1), body
    assert db_state(Automation, AutomationRun) == before


@pytest.mark.parametrize("cron", GOOD_SCHEDULES)
def test_a_sensible_schedule_is_saved_with_its_next_run(staff_and_customer, cron):
    staff, ws, cred = staff_and_customer
    response = staff.post_form(f"/staff/workspaces/{ws}/automations",
                               scheduled_form(cred.id, cron))
    assert response.status_code == 303
    with connection():
        automation = Automation.get(Automation.workspace == ws)
    assert automation.cron == cron
    assert utcnow() < automation.next_run_at < utcnow() + timedelta(days=366)


@pytest.fixture
def stored_bad_schedule(app, endpoint):
    """A schedule saved before schedules were checked ("0 0 31 2 *" in a paused workspace was
    accepted), due now, beside a good one."""
    make_user(app)
    ws = workspace_id_of("owner@example.com")
    config = {"method": "POST", "url": endpoint.url, "body": "{}", "expected_status": "2xx"}
    with app.app_context(), connection():
        good, bad = (service.create_automation(ws, name=name, flow="http_request",
                                               trigger="schedule", cron="0 * * * *",
                                               config=config)
                     for name in ("Hourly", "Never"))
        Automation.update(cron="0 0 31 2 *", next_run_at=utcnow() - timedelta(minutes=1)).where(
            Automation.id == bad.id).execute()
        Automation.update(next_run_at=utcnow() - timedelta(minutes=1)).where(
            Automation.id == good.id).execute()
    return ws, good, bad


def test_the_ticker_runs_the_good_schedules_beside_a_stored_one_that_never_fires(
        app, stored_bad_schedule):
    ws, good, bad = stored_bad_schedule
    with app.app_context(), connection():
        assert service.tick() == 1
        assert [r.automation_id for r in AutomationRun.select()] == [good.id]
        assert Automation.get_by_id(bad.id).next_run_at is None  # never due again
        assert Automation.get_by_id(good.id).next_run_at > utcnow()


def test_resuming_a_workspace_with_a_stored_schedule_that_never_fires_works(
        app, client, stored_bad_schedule):
    ws, good, bad = stored_bad_schedule
    log_in(client)
    assert client.post_form("/dashboard/automations/pause-all").status_code == 303
    assert client.post_form("/dashboard/automations/resume-all").status_code == 303
    with connection():
        assert Automation.get_by_id(bad.id).next_run_at is None
        assert Automation.get_by_id(good.id).next_run_at > utcnow()
        assert not Workspace.get_by_id(ws).automations_paused


# --- request bodies whatever their framing ---------------------------------------------------


@pytest.fixture
def hook(app, endpoint):
    make_user(app)
    ws = workspace_id_of("owner@example.com")
    config = {"method": "POST", "url": endpoint.url, "body": "{}", "expected_status": "2xx"}
    with app.app_context(), connection():
        automation = service.create_automation(ws, name="Orders", flow="http_request",
                                               trigger="webhook", config=config)
    database.close()
    return f"/hooks/{automation.webhook_secret}"


def chunks(body: bytes, size=1000):
    """A body httpx sends chunked (Transfer-Encoding: chunked, no Content-Length)."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


async def achunks(body: bytes, size=1000):
    for chunk in chunks(body, size):
        yield chunk


def through_asgi(app, path, body: bytes, content_type: str, cookies=None):
    async def post():
        transport = httpx.ASGITransport(app=build(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     cookies=cookies) as http:
            request = http.build_request("POST", path, content=achunks(body),
                                         headers={"Content-Type": content_type})
            assert request.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in request.headers
            return await http.send(request)

    return run_async(post())


@pytest.fixture
def live(app):
    """The ASGI app under a real uvicorn on loopback, for the whole test; its base URL."""
    with LiveServer(build(app)) as server:
        yield server.url


def through_uvicorn(base_url, path, body: bytes, content_type: str, cookies=None):
    with httpx.Client(base_url=base_url, cookies=cookies) as http:
        request = http.build_request("POST", path, content=chunks(body),
                                     headers={"Content-Type": content_type})
        assert request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in request.headers
        return http.send(request)


@pytest.fixture(params=["asgi", "uvicorn"])
def post_chunked(request, app):
    """POST a body in chunks through the ASGI app, or through a live uvicorn."""
    if request.param == "asgi":
        return lambda *args, **kwargs: through_asgi(app, *args, **kwargs)
    base_url = request.getfixturevalue("live")
    return lambda *args, **kwargs: through_uvicorn(base_url, *args, **kwargs)


def stored_payloads() -> list[dict]:
    with connection():
        return [json.loads(r.payload) for r in AutomationRun.select().order_by(AutomationRun.id)]


ORDER = {"order": 1234, "items": [{"sku": "MUG-1", "qty": 2}], "note": "Merci, ça va ☕"}
FORM = (b"order=77&item=mug&item=teapot&note=" + "ça va".encode())
FORM_DATA = {"order": "77", "item": ["mug", "teapot"], "note": "ça va"}


def test_a_chunked_webhook_body_is_stored_as_sent(hook, endpoint, post_chunked):
    assert post_chunked(hook, json.dumps(ORDER).encode(), "application/json").status_code == 202
    assert post_chunked(hook, FORM, "application/x-www-form-urlencoded").status_code == 202
    # Just under the 64 KB limit, in many chunks.
    big = {"note": "x" * (service.WEBHOOK_BODY_LIMIT - 20)}
    assert len(json.dumps(big)) <= service.WEBHOOK_BODY_LIMIT
    assert post_chunked(hook, json.dumps(big).encode(), "application/json").status_code == 202
    assert stored_payloads() == [ORDER, FORM_DATA, big]


def json_of_size(size: int) -> bytes:
    body = b'{"a": "' + b"x" * (size - 9) + b'"}'
    assert len(body) == size
    return body


@pytest.mark.parametrize("size", [service.WEBHOOK_BODY_LIMIT + 1, 2_500_000])
def test_a_chunked_webhook_body_past_the_limit_is_413_and_stores_nothing(hook, endpoint,
                                                                          post_chunked, size):
    before = db_state(AutomationRun)
    response = post_chunked(hook, json_of_size(size), "application/json")
    assert response.status_code == 413
    assert response.json() == {"error": "The body passes 64 KB."}
    assert db_state(AutomationRun) == before and endpoint.requests == []


@pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True, MAX_CONTENT_LENGTH=32 * 1024)
def test_a_chunked_webhook_body_past_a_lower_app_limit_is_413_too(hook, endpoint, post_chunked):
    before = db_state(AutomationRun)
    response = post_chunked(hook, json_of_size(40 * 1024), "application/json")
    assert response.status_code == 413
    assert response.json() == {"error": "The body passes 64 KB."}
    assert db_state(AutomationRun) == before and endpoint.requests == []


def login_body(client, **extra) -> bytes:
    fields = {"email": "owner@example.com", "password": PASSWORD, "csrf_token": client.csrf(),
              **extra}
    return str(httpx.QueryParams(fields)).encode()


def session_of(app, client) -> dict:
    """The test client's session cookie (its CSRF token is signed into it)."""
    name = app.config["SESSION_COOKIE_NAME"]
    return {name: client.get_cookie(name).value}


def test_a_chunked_form_is_read_whole_on_any_route(app, user, client, post_chunked):
    # Logging in needs every field of the form: an empty or cut body would be refused.
    body = login_body(client)
    response = post_chunked("/login", body, "application/x-www-form-urlencoded",
                            cookies=session_of(app, client))
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith("/dashboard/")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=b"])
def test_a_chunked_body_past_the_apps_limit_is_413_on_any_route(app, user, client, post_chunked,
                                                                content_type):
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit < 2_500_000
    body = login_body(client, note="x" * (2_500_000 - limit // 2))
    before = db_state()
    response = post_chunked("/login", body, content_type, cookies=session_of(app, client))
    assert response.status_code == 413
    assert db_state() == before


@pytest.mark.parametrize("extra, status", [(0, 303), (1, 413)])
def test_a_chunked_form_at_the_apps_limit_is_read_and_one_byte_more_is_413(app, user, client,
                                                                           extra, status):
    # A reader that stops at the limit without looking further would take the longer one as
    # whole, cut: the one byte past the limit must be noticed.
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = login_body(client)
    body += b"&note=" + b"x" * (limit - len(body) - 6 + extra)
    assert len(body) == limit + extra
    response = through_asgi(app, "/login", body, "application/x-www-form-urlencoded",
                            cookies=session_of(app, client))
    assert response.status_code == status

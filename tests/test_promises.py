"""The promise ledger: one test per promise of the privacy policy that the product makes true,
named after the promise. Each drives the product as its users do and then looks at what was
kept, down to the bytes of the database file where that is what the promise is about."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from app.accounts.models import Workspace
from app.billing import service as billing
from app.billing.models import BillingAccount, Invoice, StripeEvent
from app.db import connection, database, dialect, utcnow
from app.move_database import product_models
from tests.billing_fixtures import billing_config, double_fixture, send, upgrade  # noqa: F401
from tests.chat_fixtures import ws_fixture  # noqa: F401

CARD_NUMBER = "4242424242424242"
# What a card looks like in Stripe's payment-method objects: none of it may be kept.
# (Not "4242" alone: four digits turn up by chance in random ids and times; the whole test
# number is looked for in the rows and in the file's bytes.)
CARD_WORDS = ("last4", "exp_month", "exp_year", "cvc", "fingerprint", '"brand"', CARD_NUMBER)


@pytest.fixture
def app_config(request, app_config):
    """Stripe configured (the loopback double) for the promises about paying, the tests that
    ask for `double`; the others run as an installation without billing does."""
    if "double" not in request.fixturenames:
        return app_config
    return {**app_config, **billing_config(request.getfixturevalue("double"))}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def card_like(text: str) -> list[str]:
    """Card numbers as they are written: 13 to 19 digits in a row, or groups of four split by
    spaces or dashes, that pass the Luhn check (dates and times, 2026-11-28 20:15, are not)."""
    found = []
    written = r"(?<![\d-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7})(?![\d-])"
    for match in re.finditer(written, text):
        digits = re.sub(r"\D", "", match.group())
        if luhn_valid(digits):
            found.append(digits)
    return found


def every_row_as_text() -> str:
    lines = []
    for model in product_models():
        for row in model.select().dicts():
            lines.append(json.dumps(row, default=str))
    return "\n".join(lines)


def full_billing_flow(auth, double):
    """Upgrade, pay, fail a payment, change the address, and a payment method attached with
    its card's details (an event type we do not apply): what Stripe would send us."""
    subscription = upgrade(auth, double, auth)
    assert send(auth, double, double.pay_invoice(subscription, amount=2900, tax=609)).status_code == 200
    assert send(auth, double, double.pay_invoice(subscription, paid=False)).status_code == 200
    [customer] = double.customers.values()
    assert send(auth, double, double.update_customer(
        customer["id"], name="Shop SRL", address={"line1": "9 Str. Lunga", "country": "RO"})).status_code == 200
    card = {"id": "pm_1", "object": "payment_method", "type": "card", "customer": customer["id"],
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031,
                     "fingerprint": "Xt5EWLLDS7FJjR1c", "number": CARD_NUMBER, "cvc": "123"},
            "billing_details": {"name": "Olive Owner"}}
    assert send(auth, double, double.event("payment_method.attached", card)).status_code == 200


def test_no_payment_card_details_are_stored(app, auth, ws, double):
    full_billing_flow(auth, double)
    with connection():
        assert Invoice.select().count() == 2 and BillingAccount.select().count() == 1
        assert StripeEvent.select().where(StripeEvent.type == "payment_method.attached").get().payload == ""
        rows = every_row_as_text()
        assert card_like(rows) == []
        assert [w for w in CARD_WORDS if w in rows] == []
        if dialect() == "sqlite":
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    if dialect() == "sqlite":  # every byte of the file, free pages included
        raw = Path(app.config["DATABASE"]).read_bytes().decode("latin-1")
        assert card_like(raw) == [] and CARD_NUMBER not in raw and "last4" not in raw


def test_billing_details_reach_the_payment_processor_and_nothing_more(app, auth, ws, double):
    """We share with Stripe only what paying needs: the owner's e-mail, the workspace's name
    and id, the plan. The card is typed on Stripe's page, never on ours."""
    full_billing_flow(auth, double)
    sent = [(r.path.split("?")[0], r.body.decode()) for r in double.requests if r.method == "POST"]
    customer_posts = [body for path, body in sent if path == "/v1/customers"]
    assert len(customer_posts) == 1
    assert sorted(k.split("[")[0] for k, _ in (p.split("=", 1) for p in customer_posts[0].split("&"))) == [
        "email", "metadata", "name"]
    assert {path for path, _ in sent} <= {"/v1/customers", "/v1/checkout/sessions"}
    page = auth.get("/dashboard/billing").get_data(as_text=True)
    assert not re.search(r'name="(card|cardnumber|cc-number|cvc|exp)', page)
    assert 'autocomplete="cc-' not in page


def test_invoices_are_kept_after_the_workspace_is_deleted_for_the_legal_period(app, auth, ws, double):
    full_billing_flow(auth, double)
    with app.test_request_context(), connection():
        Workspace.get_by_id(ws).delete_instance(recursive=False)
        assert Workspace.get_or_none(Workspace.id == ws) is None
        assert Invoice.select().where(Invoice.workspace_id == ws).count() == 2
        assert BillingAccount.select().where(BillingAccount.workspace_id == ws).count() == 1
        # Within the retention period (10 years) nothing goes; past it, the records go.
        assert billing.purge_expired_records(utcnow() + timedelta(days=365 * 9)) == 0
        assert Invoice.select().count() == 2
        assert billing.purge_expired_records(utcnow() + timedelta(days=365 * 10 + 5)) == 2
        assert Invoice.select().count() == 0
        assert BillingAccount.select().count() == 0


def test_account_holders_are_alerted_to_new_sign_ins_credential_changes_and_staff_access(app, client, ws):
    from app.accounts import alerts
    from app.mail.models import OutboundEmail
    from tests.conftest import PASSWORD, Client, staff_client

    def sign_in(user_agent):
        answer = Client(app.test_client()).post_form(
            "/login", {"email": "owner@example.com", "password": PASSWORD}, headers={"User-Agent": user_agent})
        assert answer.status_code == 303

    sign_in("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
    sign_in("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1")
    owner = Client(app.test_client())
    owner.post_form("/login", {"email": "owner@example.com", "password": PASSWORD},
                    headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"})
    owner.post_form("/dashboard/credentials", {"platform": "Shopify", "label": "Shop", "kind": "api_token",
                                               "secret": "shpat_0123456789abcdef"})
    staff_client(app).get(f"/staff/workspaces/{ws}")
    with app.test_request_context(), connection():
        alerts.send_access_digests()
        subjects = [m.subject for m in OutboundEmail.select().where(OutboundEmail.to == "owner@example.com")]
    assert "New sign-in to your Lumnar account" in subjects
    assert "A credential was added in your Lumnar workspace" in subjects
    assert "Lumnar staff accessed your workspace" in subjects


def test_usage_is_counted_without_identifiers_and_not_after_an_objection(app, auth):
    from app.insight import service as insight
    from app.insight.models import InsightCount

    insight.tally.take()  # nothing counted for an earlier test's app
    agent = "PromiseProbe/1.0 (an agent string to look for)"
    auth.get("/dashboard/inbox?q=refund", headers={"User-Agent": agent})
    insight.flush()
    with connection():
        columns = sorted(c.name for c in database.get_columns("insight_count"))
        rows = database.execute_sql(
            'SELECT "day", "kind", "name", "count" FROM "insight_count"').fetchall()
    # A day, a kind, a name and a number: no column for who, from where or with what.
    assert columns == ["count", "day", "kind", "name"]
    assert ("page", "chat.inbox") in {(kind, name) for _, kind, name, _ in rows}
    kept = " ".join(map(str, rows))
    for trace in (agent, "PromiseProbe", "127.0.0.1", "owner@example.com", "Olive", "/dashboard",
                  "refund"):
        assert trace not in kept
    assert not any(re.search(r"\d", name) for _, _, name, _ in rows)  # no id in any name

    def inbox_views() -> int:
        insight.flush()
        with connection():
            return sum(r.count for r in InsightCount.select().where(InsightCount.name == "chat.inbox"))

    before = inbox_views()
    assert auth.post_form("/dashboard/settings/insight/objection").status_code == 303
    auth.get("/dashboard/inbox")
    auth.get("/dashboard/settings")
    assert inbox_views() == before


def test_requests_get_an_answer_by_a_due_date(app, auth, ws, smtp):
    """A privacy request is acknowledged with its reference and a due date one calendar month
    out; staff see it, answer it in time and the answer reaches the requester; one left
    unanswered past its date stands first in the staff queue and digest, marked overdue."""
    import calendar
    from datetime import date

    from app.accounts.models import User
    from app.contact.models import ContactRequest
    from jobs.contact import request_digest
    from tests.conftest import staff_client
    from tests.mailcatcher import text_of

    def one_month_after(day: date) -> date:
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))

    def long_date(day: date) -> str:
        return f"{day.day} {day:%B %Y}"

    filed = auth.post_form("/dashboard/requests",
                           {"kind": "access", "details": "A copy of everything you keep."})
    assert filed.status_code == 303
    with connection():
        request = ContactRequest.get(ContactRequest.workspace == ws)
    due = one_month_after(request.received_at.date())
    assert request.due_on == due
    ack = text_of(smtp.wait_for("owner@example.com", request.reference))
    assert long_date(due) in ack
    assert long_date(due) in auth.get("/dashboard/requests").get_data(as_text=True)

    staff = staff_client(app)
    assert request.reference in staff.get("/staff/requests/").get_data(as_text=True)
    answered = staff.post_form(f"/staff/requests/{request.id}/reply",
                               {"body": "Your copy is attached to this answer."})
    assert answered.status_code == 303
    reply = text_of(smtp.wait_for("owner@example.com", f"Re: your request {request.reference}"))
    assert "Your copy is attached to this answer." in reply
    with connection():
        request = ContactRequest.get_by_id(request.id)
        assert request.status == ContactRequest.ANSWERED
        assert request.thread.get().created_at.date() <= request.due_on

    auth.post_form("/dashboard/requests", {"kind": "deletion", "details": "Delete my visitors."})
    with connection():
        late = ContactRequest.get(ContactRequest.kind == "deletion")
        ContactRequest.update(due_on=utcnow().date() - timedelta(days=3)).where(
            ContactRequest.id == late.id).execute()
        staff_address = User.get(User.is_staff == True).email  # noqa: E712
    queue = staff.get("/staff/requests/").get_data(as_text=True)
    assert late.reference in queue and "overdue by 3 days" in queue
    with app.app_context():
        request_digest()
    digest = text_of(smtp.wait_for(staff_address, "1 overdue"))
    assert late.reference in digest and "OVERDUE by 3 days" in digest
    assert request.reference not in digest  # answered: no longer waiting


def test_notice_at_least_30_days_before_a_material_change(app, user, smtp):
    from app.accounts.models import User
    from app.mail.models import OutboundEmail
    from app.policies.models import PolicyNotice, PolicyVersion
    from tests.conftest import staff_client

    staff = staff_client(app)
    change = {"kind": "privacy", "text": "## Chats\n\nKept one year.", "summary": "Chats kept a year.",
              "material": "y"}
    for days in (0, 29):
        soon = (utcnow() + timedelta(days=days)).date().isoformat()
        assert staff.post_form("/staff/policies", {**change, "effective_on": soon}).status_code == 422, days
    with connection():
        assert not PolicyVersion.select().where(PolicyVersion.material).exists()
    later = (utcnow() + timedelta(days=31)).date().isoformat()
    assert staff.post_form("/staff/policies", {**change, "effective_on": later}).status_code == 303
    with connection():
        holders = {u.email for u in User.select().where(User.email_verified_at.is_null(False))}
        material = list(PolicyVersion.select().where(PolicyVersion.material & PolicyVersion.announced))
        assert material
        for version in material:
            assert version.effective_at - version.published_at >= timedelta(days=30)
            ids = [n.email_id for n in PolicyNotice.select().where(PolicyNotice.version == version)]
            told = {e.to: e for e in OutboundEmail.select().where(OutboundEmail.id.in_(ids))}
            assert set(told) == holders
            for email in told.values():
                assert email.status == OutboundEmail.SENT
                assert version.effective_at - email.sent_at >= timedelta(days=30)
    assert smtp.to(user.email)


def test_nothing_is_set_on_devices_beyond_the_table(app, user):
    from app.policies.cookies import COOKIES, listed
    from tests.conftest import Client, log_in
    from tests.route_walk import flask_routes, world

    params = world(app, user)["params"]
    owner = Client(app.test_client())
    log_in(owner)
    anonymous = Client(app.test_client())
    set_cookies = {}
    for path, _, endpoint in flask_routes(app, params, methods=("GET",)):
        for who, client in (("anonymous", anonymous), ("owner", owner)):
            response = client.get(path)
            response.close()  # a static file's answer holds the file open until closed
            for header in response.headers.getlist("Set-Cookie"):
                set_cookies.setdefault(header.split("=", 1)[0], f"{who} GET {path} ({endpoint})")
    assert set_cookies, "the walk met the session cookie"
    assert {n: w for n, w in set_cookies.items() if not listed("cookie", n)} == {}
    # Our own scripts: every storage write is in the table (tests/e2e/test_device_storage_browser.py
    # watches the real pages, the chat's frame included).
    root = Path(__file__).resolve().parents[1]
    sources = {p: p.read_text() for p in (root / "static").rglob("*.js") if "vendor" not in p.parts}
    sources.update({p: p.read_text() for p in (root / "templates").rglob("*.html")})
    setters = {item.set_by for item in COOKIES}
    for path, source in sources.items():
        assert not re.search(r"document\.cookie\s*=", source), f"{path} writes a cookie from script"
        if re.search(r"(localStorage|sessionStorage)\.setItem", source):
            rel = path.relative_to(root).as_posix()
            assert any(rel in s for s in setters), f"{rel} writes storage but COOKIES names it nowhere"
        for kind, key in re.findall(r"(localStorage|sessionStorage)\.setItem\(\s*[\"']([^\"']+)[\"']", source):
            assert listed(kind, key), (path, kind, key)
        for prefix in re.findall(r"storageKey\s*=\s*[\"']([^\"']+)[\"']\s*\+", source):
            assert listed("localStorage", prefix + "AbC123"), (path, prefix)


def test_restricted_workspace_runs_nothing(app, auth, ws):
    import json as json_

    from app.automations import service as automations
    from app.automations.models import Automation, AutomationRun
    from app.privacy.restriction.service import ProcessingRestricted
    from tests.conftest import staff_client

    with app.test_request_context(), connection():
        def make(**fields):
            return Automation.create(**{
                "workspace": ws, "name": "Nightly", "flow": "http_request",
                "config": json_.dumps({"url": "https://example.com", "method": "POST"}),
                "trigger": Automation.SCHEDULE, "cron": "* * * * *", "next_run_at": utcnow(), **fields})
        scheduled, paused = make(), make(name="Paused", paused=True, next_run_at=None)
        make(name="On chat", trigger=Automation.CHAT, cron="", chat_event="conversation_started",
             next_run_at=None)
    assert auth.post_form("/dashboard/privacy/restriction").status_code == 303
    with app.test_request_context(), connection():
        assert automations.tick() == 0
        assert automations.publish_chat_event(ws, "conversation_started", {}) == 0
        for dry_run in (False, True):
            with pytest.raises(ProcessingRestricted):
                automations.run_now(Automation.get_by_id(scheduled.id), dry_run=dry_run)
        with pytest.raises(ProcessingRestricted):
            automations.resume(Automation.get_by_id(paused.id))
    assert auth.post_form(f"/dashboard/automations/{scheduled.id}/run").status_code == 409
    assert staff_client(app).post_form(f"/staff/workspaces/{ws}/automations/{scheduled.id}/test",
                                       {"dry_run": "y"}).status_code == 409
    with connection():
        assert AutomationRun.select().count() == 0 and Automation.select().count() == 3


def test_one_click_unsubscribe_needs_no_login(app, ws, smtp):
    from app.mail.models import OutboundEmail
    from app.privacy.restriction.models import EmailObjection
    from tests.chat_fixtures import WidgetVisitor, make_site

    site = make_site(app, ws)
    owner = "owner@example.com"
    WidgetVisitor.arrive(app, site.site_key).send("First question", email="ann@example.com")
    notice = smtp.wait_for(owner, "New chat message")
    assert notice["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", notice["List-Unsubscribe"]).group(1)
    assert url.startswith(app.config["BASE_URL"] + "/unsubscribe/") and owner not in url
    assert app.test_client().get(url.removeprefix(app.config["BASE_URL"])).status_code == 200
    with connection():
        assert EmailObjection.select().count() == 0  # a GET never unsubscribes
    answer = app.test_client().post(url.removeprefix(app.config["BASE_URL"]),
                                    data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    with connection():
        assert [(o.email, o.kind) for o in EmailObjection.select()] == [(owner, "away_notice")]
    WidgetVisitor.arrive(app, site.site_key).send("Second question", email="bob@example.com")
    with connection():
        assert OutboundEmail.select().where((OutboundEmail.to == owner)
                                            & OutboundEmail.subject.contains("New chat message")).count() == 1


BILLING_TABLES = {"billing_account", "billing_invoice", "billing_event"}


def test_deleted_workspace_leaves_only_billing_records(app, client, auth, ws, double, smtp):
    """The owner deletes their account, which alone owns the workspace: after the grace
    period, no row anywhere holds the workspace's people, visitors, words, credentials or
    settings; what stays is the billing records and the access log without names, and the
    last e-mail is the confirmation."""
    from app.automations import vault
    from app.mail.models import OutboundEmail
    from app.privacy.deletion import service as deletion
    from app.staff.models import AuditEntry
    from tests.chat_fixtures import WidgetVisitor, make_site, png_bytes, reply, set_agent_online
    from tests.conftest import PASSWORD

    full_billing_flow(auth, double)
    site = make_site(app, ws, name="Marmalade Corner")
    set_agent_online(ws)
    guest = WidgetVisitor.arrive(app, site.site_key)
    guest.send("My order qwzorbital7 never came", name="Petra Plum", email="petra@plum.example",
               file=(png_bytes(), "receipt-qwz.png", "image/png"))
    conversation = guest.conversation()
    reply(auth, conversation.id, {"body": "Sorry Petra, resending qwzorbital7 today"})
    guest.transcript()
    with app.test_request_context(), connection():
        vault.store(ws, "crm", "Plum CRM", "api_token", {"token": "tok-qwz-5c4b3a29181716"})
        AuditEntry.create(workspace_id=ws, staff_id=None, staff_email="staff@lumnar.example",  # closed since
                          action="opened a conversation (support)")
    assert auth.post_form("/dashboard/privacy/delete-account", {"password": PASSWORD}).status_code == 303
    with app.test_request_context(), connection():
        assert deletion.run_due(utcnow() + timedelta(days=15)) == 1

    gone = ("owner@example.com", "Olive Owner", "Petra Plum", "petra@plum.example", "qwzorbital7",
            "receipt-qwz", "Plum CRM", "tok-qwz", "Marmalade Corner")
    with connection():
        kept_billing = {m._meta.table_name: m.select().count() for m in product_models()
                        if m._meta.table_name in BILLING_TABLES}
        last = OutboundEmail.select().order_by(OutboundEmail.id.desc()).first()
        for model in product_models():
            table = model._meta.table_name
            if table in BILLING_TABLES:
                continue
            for row in model.select().dicts():
                if table == "outbound_email" and row["id"] == last.id:
                    continue  # the confirmation itself, to the address that asked
                text = json.dumps(row, default=str)
                for word in gone:
                    assert word not in text, f"{word!r} left in {table}: {text[:300]}"
                if "workspace_id" in row and table != "audit_entry":
                    assert row["workspace_id"] != ws, f"{table} still names the workspace"
        assert [e.staff_email for e in AuditEntry.select().where(AuditEntry.workspace_id == ws)] == [
            "staff@lumnar.example"]
    assert kept_billing["billing_invoice"] == 2 and kept_billing["billing_account"] == 1
    assert last.subject == "Your Lumnar account was deleted" and last.to == "owner@example.com"


@pytest.mark.sqlite_only("SQLite's file, its WAL and FTS5's segments")
def test_deleted_words_are_gone_from_the_file(app, auth, ws):
    """Once the account and its workspace are deleted, the visitors' words, names and e-mail
    addresses are in no byte of the database file, its WAL or a backup made afterwards (the
    file held them before: the search is real). Each deletion path of a conversation or a
    visitor is proven the same way in tests/test_erasure_bytes.py."""
    from app.privacy.deletion import service as deletion
    from tests.chat_fixtures import index_search, make_site, set_agent_online
    from tests.conftest import PASSWORD
    from tests.test_backup_restore import backup
    from tests.test_erasure_bytes import Person, database_files, found_in

    site = make_site(app, ws, name="Quince Quarter")
    set_agent_online(ws)
    people = [Person(app, site), Person(app, site)]
    index_search()
    needles = [n for p in people for n in p.needles] + ["Quince Quarter"]
    assert set(needles) <= {n for hits in found_in(database_files(app), needles).values() for n in hits}
    assert auth.post_form("/dashboard/privacy/delete-account", {"password": PASSWORD}).status_code == 303
    with app.test_request_context(), connection():
        assert deletion.run_due(utcnow() + timedelta(days=15)) == 1
    assert found_in([*database_files(app), backup(app)], needles) == {}

"""What the loader learns before it shows anything (GET /widget/<key>/status): whether the
asking page's origin is one of the site's, the chat button's label and colours, whether it
waits for consent, or the one message to write to the console. And the cheap, bounded record
of where each site's widget loaded and was refused, which the site's page shows."""

import re
from datetime import timedelta

import pytest

from app import migrations
from app.db import connection, database, utcnow
from app.widget import service as widget_service
from app.widget.colours import contrast, launcher_theme
from app.widget.models import OriginSeen, Site
from tests.chat_fixtures import count, site_fixture, ws_fixture  # noqa: F401
from tests.conftest import db_state, make_user
from tests.test_migrations_upgrade import own_app  # noqa: F401  (a database of the test's own)

SHOP = "https://shop.example.com"  # the site fixture's one allowed origin
EVIL = "https://evil.example"


def status(app, key, origin=SHOP, query=None):
    headers = {"Origin": origin} if origin else {}
    url = f"/widget/{key}/status" + (f"?origin={query}" if query else "")
    return app.test_client().get(url, headers=headers)


def rows(site_id) -> list[tuple]:
    with connection():
        return [(r.origin, r.allowed, r.loads) for r in
                OriginSeen.select().where(OriginSeen.site == site_id).order_by(OriginSeen.origin)]


# --- the answer ------------------------------------------------------------------------------


def test_an_allowed_origin_gets_the_buttons_label_and_colours(app, site):
    with connection():
        Site.update(accent_color="#0f766e", launcher_label="Ask us").where(
            Site.id == site.id).execute()
    answer = status(app, site.site_key)
    assert answer.status_code == 200
    assert answer.get_json() == {
        "allowed": True, "label": "Ask us", "consent": False,
        "theme": {"accent": "#0f766e", "text": "#ffffff", "ring": "#1b1f24",
                  "shadow": "rgba(0, 0, 0, 0.25)"}}
    # Readable by the customer's page (any origin), sent and answered without cookies, and
    # never kept: each page view asks (and counts).
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in answer.headers


def test_a_refused_origin_gets_one_message_naming_what_to_add_and_nothing_else(app, site):
    answer = status(app, site.site_key, EVIL)
    assert answer.status_code == 200  # a 4xx would add the browser's own line to the console
    assert answer.get_json() == {"allowed": False, "message": (
        "Lumnar chat is not shown on this page: https://evil.example is not an allowed origin "
        "of the site “Shop”. To show the chat here, add https://evil.example to the allowed "
        "origins on the site's page in the Lumnar dashboard (Sites → Shop).")}
    assert SHOP not in answer.get_data(as_text=True)  # the allowed origins are not told


def test_the_browsers_origin_header_wins_over_what_the_page_claims(app, site):
    # A same-origin request carries no Origin header: then the loader's parameter is used...
    assert status(app, site.site_key, origin=None, query=SHOP).get_json()["allowed"] is True
    # ...but a page cannot claim another origin than the one its browser names.
    assert status(app, site.site_key, origin=EVIL, query=SHOP).get_json()["allowed"] is False


@pytest.mark.parametrize("origin", ["null", "", "file:///home/ann/shop.html", "not an origin"])
def test_a_page_without_a_web_origin_is_told_so(app, site, origin):
    answer = status(app, site.site_key, origin=origin or None)
    assert answer.get_json() == {"allowed": False, "message": (
        "Lumnar chat is not shown on this page: the page has no web origin (a file, or a "
        "sandboxed frame). The chat loads on pages served over http or https from one of the "
        "site's allowed origins.")}
    assert rows(site.id) == []


def test_an_unknown_or_switched_off_site_is_told_so(app, site):
    expected = ("Lumnar chat: no site has the key “site_nope”, or its widget is switched off. "
                "Copy the snippet again from the site's page in the Lumnar dashboard (Sites).")
    assert status(app, "site_nope").get_json() == {"allowed": False, "message": expected}
    with connection():
        Site.update(enabled=False).where(Site.id == site.id).execute()
    answer = status(app, site.site_key).get_json()
    assert answer["allowed"] is False and "is switched off" in answer["message"]


def test_the_consent_option_is_passed_on(app, site):
    with connection():
        Site.update(consent_required=True).where(Site.id == site.id).execute()
    assert status(app, site.site_key).get_json()["consent"] is True


# --- colours -----------------------------------------------------------------------------------


@pytest.mark.parametrize("accent", ["#4338ca", "#0f766e", "#7c2d12", "#000000", "#767676"])
def test_the_buttons_text_reads_well_on_every_accent_a_site_may_save(accent):
    theme = launcher_theme(accent)
    assert theme["text"] == "#ffffff"
    assert contrast(theme["text"], theme["accent"]) >= 4.5
    # The focus ring: the text colour against the button, then a ring that contrasts with it.
    assert contrast(theme["ring"], theme["text"]) >= 4.5


def test_a_light_accent_saved_before_the_check_gets_dark_text():
    theme = launcher_theme("#ffee88")
    assert theme["text"] == "#1b1f24" and contrast(theme["text"], "#ffee88") >= 4.5
    assert theme["ring"] == "#ffffff"


# --- where it loaded ----------------------------------------------------------------------------


def test_each_page_view_is_recorded_at_most_once_a_minute_per_origin(app, site, monkeypatch):
    for _ in range(3):
        status(app, site.site_key)
        status(app, site.site_key, EVIL)
    # The first view of each origin is written at once; the next ones within the minute wait.
    assert rows(site.id) == [(EVIL, False, 1), (SHOP, True, 1)]
    monkeypatch.setattr(widget_service, "SIGHTING_WRITE_SECONDS", 0)
    status(app, site.site_key)
    assert rows(site.id) == [(EVIL, False, 1), (SHOP, True, 4)]  # the waiting views came along


def test_an_origin_allowed_later_starts_counting_again(app, site, monkeypatch):
    monkeypatch.setattr(widget_service, "SIGHTING_WRITE_SECONDS", 0)
    status(app, site.site_key, EVIL)
    status(app, site.site_key, EVIL)
    assert rows(site.id) == [(EVIL, False, 2)]
    with app.test_request_context(), connection():
        widget_service.save_site(Site.get_by_id(site.id), allowed_origins=f"{SHOP}\n{EVIL}")
    status(app, site.site_key, EVIL)
    assert rows(site.id) == [(EVIL, True, 1)]
    # And one no longer allowed loses its "last loaded" line when the site is saved.
    with app.test_request_context(), connection():
        widget_service.save_site(Site.get_by_id(site.id), allowed_origins=SHOP)
    assert rows(site.id) == []


def test_refused_origins_are_kept_seven_days_and_fifty_a_site(app, site, monkeypatch):
    monkeypatch.setattr(widget_service, "SIGHTING_WRITE_SECONDS", 0)
    status(app, site.site_key, "https://old.example")
    with connection():
        OriginSeen.update(last_seen_at=utcnow() - timedelta(days=8)).execute()
    for n in range(60):
        status(app, site.site_key, f"https://spam{n}.example")
    kept = rows(site.id)
    assert len(kept) == 50
    assert ("https://old.example", False, 1) not in kept  # pruned, not merely hidden
    assert ("https://spam49.example", False, 1) in kept
    assert ("https://spam50.example", False, 1) not in kept
    # Origins already kept still count, and allowed ones are always recorded.
    status(app, site.site_key, "https://spam0.example")
    status(app, site.site_key)
    assert ("https://spam0.example", False, 2) in rows(site.id)
    assert (SHOP, True, 1) in rows(site.id)


def test_the_site_page_lists_refused_origins_of_the_last_seven_days_only(app, auth, site,
                                                                          monkeypatch):
    monkeypatch.setattr(widget_service, "SIGHTING_WRITE_SECONDS", 0)
    status(app, site.site_key, EVIL)
    status(app, site.site_key, EVIL)
    status(app, site.site_key, "https://stale.example")
    with connection():
        OriginSeen.update(last_seen_at=utcnow() - timedelta(days=7, minutes=1)).where(
            OriginSeen.origin == "https://stale.example").execute()
    html = auth.get(f"/dashboard/sites/{site.id}").get_data(as_text=True)
    assert re.search(r"<td><code>https://evil.example</code></td><td>2</td><td><time ", html)
    assert "stale.example" not in html
    assert re.search(r"<td><code>https://shop.example.com</code></td><td>Not yet</td>", html)
    status(app, site.site_key)
    html = auth.get(f"/dashboard/sites/{site.id}").get_data(as_text=True)
    assert re.search(r"<td><code>https://shop.example.com</code></td><td><time datetime=\"[^\"]+\">"
                     r"\d{4}-\d\d-\d\d \d\d:\d\d UTC</time></td>", html)


def test_nothing_is_recorded_for_a_site_that_does_not_exist(app, site):
    status(app, "site_nope", EVIL)
    assert count(OriginSeen) == 0


# --- the migration -------------------------------------------------------------------------------


@pytest.fixture
def unmigrated(own_app):  # noqa: F811  (the fixture imported above)
    """An app on a database of this test's own, not migrated yet (it drops columns)."""
    return own_app


def test_migration_13_gives_existing_sites_the_default_label_and_no_consent_gate(unmigrated):
    app = unmigrated
    with app.app_context(), connection():
        migrations.run()
    owner = make_user(app)
    with app.test_request_context(), connection():
        ws = owner.memberships.get().workspace_id
        widget_service.save_site(Site(workspace=ws), name="Shop", allowed_origins=SHOP)
        database.execute_sql('DROP TABLE "widget_origin_seen"')
        database.execute_sql('ALTER TABLE "site" DROP COLUMN "launcher_label"')
        database.execute_sql('ALTER TABLE "site" DROP COLUMN "consent_required"')
        migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version == 13).execute()
        assert migrations.run() == ["0013_widget_launcher_and_origins"]
        site = Site.get()
        assert (site.name, site.launcher_label, site.consent_required) == (
            "Shop", "Chat with us", False)
        assert OriginSeen.select().count() == 0
    before = db_state(Site)
    with app.app_context(), connection():
        migrations._0013_widget_launcher_and_origins(database)  # again: nothing changes
    assert db_state(Site) == before

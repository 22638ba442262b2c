"""Policies as versions: staff publish (a material change only with 30 days' notice), every
account holder is e-mailed in batches and sees a dashboard notice until they acknowledge it,
the public pages show the current and upcoming versions, the history and a word-level diff,
and nothing a policy's author writes can run as script."""

import re
from datetime import date, datetime, timedelta
from html import unescape as html_unescape

import pytest
from huey import signals

from app.accounts.models import User
from app.db import connection, utcnow
from app.mail.models import OutboundEmail
from app.policies import cookies, providers, service
from app.policies.models import PolicyAcknowledgement, PolicyNotice, PolicyVersion
from app.policies.text import safe_link, to_html, word_diff
from tests.conftest import Client, db_state, log_in, make_user, staff_client

STAFF_PAGE = "/staff/policies"


def publish_form(**over) -> dict:
    data = {"kind": "privacy", "text": "## What we keep\n\nYour name and e-mail address.",
            "summary": "We now say plainly what we keep.", "effective_on": ""}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def in_days(n: int) -> str:
    return (utcnow() + timedelta(days=n)).date().isoformat()


def versions(kind="privacy") -> list[PolicyVersion]:
    with connection():
        return list(PolicyVersion.select().where(PolicyVersion.kind == kind)
                    .order_by(PolicyVersion.version))


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def staff(app):
    return staff_client(app)


def publish(app, kind="privacy", text="Some text.", summary="A change.", material=False,
            effective_on=None, now=None):
    with app.test_request_context(), connection():
        return service.publish(kind, text, summary, material, effective_on, None, now=now)


# --- the first version -------------------------------------------------------------------------


def test_the_privacy_page_becomes_version_one_on_first_read(client, app):
    assert versions() == []
    page = client.get("/privacy")
    assert page.status_code == 200
    (first,) = versions()
    assert (first.version, first.announced, first.material) == (1, False, False)
    assert "one-way hash of your password" in first.text
    assert "privacy@lumnar.localhost" in first.text  # the configured contact address
    html = text(page)
    assert "Version 1, in effect since" in html
    assert '<a href="mailto:privacy@lumnar.localhost">' in html
    client.get("/privacy")
    assert len(versions()) == 1  # made once
    with app.app_context(), connection():
        assert service.ensure_first_versions() is False


def test_terms_answer_404_until_a_version_exists_then_show_it(client, app):
    assert client.get("/terms").status_code == 404
    assert client.get("/terms/diff?from=1&to=2").status_code == 404
    publish(app, kind="terms", text="## Using Lumnar\n\nBe kind.", summary="First terms.")
    page = client.get("/terms")
    assert page.status_code == 200
    assert "<h2>Using Lumnar</h2>" in text(page)


# --- publishing: staff only, 30 days for a material change ----------------------------------


@pytest.mark.parametrize("days", [0, 1, 29])
def test_a_material_change_with_less_than_30_days_notice_is_refused_beside_the_date(
        staff, days):
    staff.get("/privacy")  # version 1 exists
    before = db_state(PolicyVersion, PolicyNotice, OutboundEmail)
    answer = staff.post_form(STAFF_PAGE, publish_form(material="y", effective_on=in_days(days)))
    assert answer.status_code == 422
    html = text(answer)
    error = re.search(r'<p class="error" id="effective_on-error">(.*?)</p>', html, re.S)
    assert error and "at least 30 days after it is published" in error.group(1)
    assert db_state(PolicyVersion, PolicyNotice, OutboundEmail) == before


def test_a_material_change_without_a_date_is_refused(staff):
    answer = staff.post_form(STAFF_PAGE, publish_form(material="y"))
    assert answer.status_code == 422
    assert "at least 30 days" in text(answer)
    assert len(versions()) == 1  # only the first version, made when the form's page was read


def test_a_material_change_31_days_ahead_is_published_as_upcoming(staff, client):
    answer = staff.post_form(STAFF_PAGE, publish_form(material="y", effective_on=in_days(31)))
    assert answer.status_code == 303, text(answer)
    newest = versions()[-1]
    assert (newest.version, newest.material) == (2, True)
    assert newest.effective_at - newest.published_at >= timedelta(days=30)
    page = text(client.get("/privacy"))
    assert "Version 1, in effect since" in page
    upcoming = re.search(r'<section class="policy-upcoming.*?</section>', page, re.S).group(0)
    assert "Version 2 takes effect on" in upcoming
    assert "We now say plainly what we keep." in upcoming
    assert "/privacy/diff?from=1&amp;to=2" in upcoming


def test_the_earliest_material_date_gives_30_full_days():
    assert service.earliest_material_date(datetime(2026, 1, 1, 0, 0)) == date(2026, 1, 31)
    assert service.earliest_material_date(datetime(2026, 1, 1, 9, 30)) == date(2026, 2, 1)


def test_a_non_material_change_may_take_effect_at_once(staff, client):
    answer = staff.post_form(STAFF_PAGE, publish_form(effective_on=in_days(0)))
    assert answer.status_code == 303, text(answer)
    page = text(client.get("/privacy"))
    assert "Version 2, in effect since" in page
    assert "Your name and e-mail address." in page
    assert "policy-upcoming" not in page


@pytest.mark.parametrize("over, field, message", [
    ({"kind": "secrets"}, "kind", "Choose a policy from the list."),
    ({"text": "  "}, "text", "Write the policy's text."),
    ({"summary": ""}, "summary", "Say in a few sentences what changes"),
    ({"effective_on": "2020-01-01"}, "effective_on", "in the past"),
    ({"effective_on": "not a date"}, "effective_on", "Not a valid date value."),
    ({"effective_on": in_days(500)}, "effective_on", "within a year"),
])
def test_bad_input_is_refused_beside_its_field_and_nothing_is_saved(staff, over, field, message):
    staff.get("/privacy")
    before = db_state(PolicyVersion, OutboundEmail)
    answer = staff.post_form(STAFF_PAGE, publish_form(**over))
    assert answer.status_code == 422
    error = re.search(rf'<p class="error" id="{field}-error">(.*?)</p>', text(answer), re.S)
    assert error and message in html_unescape(error.group(1))
    assert db_state(PolicyVersion, OutboundEmail) == before


def test_a_version_may_not_take_effect_before_an_earlier_one(staff):
    assert staff.post_form(STAFF_PAGE, publish_form(material="y", effective_on=in_days(40))).status_code == 303
    answer = staff.post_form(STAFF_PAGE, publish_form(effective_on=in_days(0)))
    assert answer.status_code == 422
    assert "Version 2 takes effect on" in text(answer)
    assert [v.version for v in versions()] == [1, 2]


def test_anyone_but_staff_gets_404_on_the_staff_pages(app, client, auth):
    for who in (client, auth):
        assert who.get(STAFF_PAGE).status_code == 404
        assert who.post_form(STAFF_PAGE, publish_form()).status_code == 404
    assert len(versions()) == 1  # the first version, read by the CSRF helper's page


def test_the_publish_form_needs_the_sessions_csrf_token(staff):
    answer = staff.post(STAFF_PAGE, data=publish_form())
    assert answer.status_code == 400
    assert len(versions()) == 1


def test_the_staff_page_shows_the_form_with_the_latest_text(staff):
    page = staff.get(STAFF_PAGE)
    assert page.status_code == 200
    html = text(page)
    assert 'name="effective_on"' in html and 'type="date"' in html
    assert "one-way hash of your password" in html  # version 1, to start from


# --- telling people ----------------------------------------------------------------------------


@pytest.fixture
def task_runs():
    """Every background task that ran: (name, args), from Huey's own signal."""
    from jobs import huey

    runs = []

    @huey.signal(signals.SIGNAL_COMPLETE)
    def seen(signal, task, *args, **kwargs):
        runs.append((task.name, task.args))

    yield runs
    huey.disconnect_signal(seen)


@pytest.mark.config(POLICY_BATCH=2)
def test_publishing_emails_every_verified_account_holder_in_batches(app, staff, smtp, task_runs):
    people = [make_user(app, email=f"holder{i}@example.com", name=f"Holder {i}") for i in range(4)]
    with connection():
        User.update(email_verified_at=None).where(User.email == "holder3@example.com").execute()
    answer = staff.post_form(STAFF_PAGE, publish_form(material="y", effective_on=in_days(31)))
    assert answer.status_code == 303, text(answer)
    with connection():
        verified = {u.email for u in User.select().where(User.email_verified_at.is_null(False))}
        sent = list(OutboundEmail.select().where(OutboundEmail.subject.contains("privacy policy")))
    assert "holder3@example.com" not in verified and len(verified) == 4  # staff + 3 holders
    assert sorted(e.to for e in sent) == sorted(verified)
    for email in sent:
        assert email.status == OutboundEmail.SENT
        assert "changes on" in email.subject
        assert "unsubscribe" not in (email.text_body + email.html_body).lower()
        assert "We now say plainly what we keep." in email.text_body
        assert "http://localhost/privacy/diff?from=1&to=2" in email.text_body
    assert smtp.to("holder0@example.com")
    # One task per batch of (here) two ids, each e-mailing its own people.
    batches = [args[1] for name, args in task_runs if name.endswith("notify")]
    assert sorted(len(b) for b in batches) == [2, 2]
    with connection():
        verified_ids = sorted(u.id for u in User.select().where(User.email_verified_at.is_null(False)))
    assert sorted(i for b in batches for i in b) == verified_ids
    assert people[3].id not in verified_ids


def _staff_id() -> int:
    with connection():
        return User.by_email("staff@lumnar.example").id


def test_a_batch_run_twice_emails_nobody_twice(app, staff):
    staff.post_form(STAFF_PAGE, publish_form())
    version = versions()[-1]
    with connection():
        before = OutboundEmail.select().count()
    with app.test_request_context(), connection():
        assert service.notify(version.id, [_staff_id()]) == 0
        assert OutboundEmail.select().count() == before
        assert PolicyNotice.select().where(PolicyNotice.version == version.id).count() == 1


def banner(page_html: str) -> str | None:
    found = re.search(r'<section class="alert alert-info policy-banner".*?</section>', page_html, re.S)
    return found.group(0) if found else None


def test_the_notice_shows_on_the_dashboard_until_acknowledged_with_the_version(app, auth, staff):
    assert banner(text(auth.get("/dashboard/inbox"))) is None
    staff.post_form(STAFF_PAGE, publish_form(material="y", effective_on=in_days(45),
                                             summary="Chats are now kept for one year."))
    version = versions()[-1]
    for url in ("/dashboard/inbox", "/dashboard/settings"):
        shown = banner(text(auth.get(url)))
        assert shown and "Chats are now kept for one year." in shown, url
        assert "takes effect on" in shown
    answer = auth.post_form("/dashboard/policies/acknowledge",
                            {"version": str(version.id), "next": "/dashboard/settings"})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/dashboard/settings")
    assert banner(text(auth.get("/dashboard/inbox"))) is None
    with connection():
        owner = User.by_email("owner@example.com")
        (ack,) = PolicyAcknowledgement.select().where(PolicyAcknowledgement.user == owner.id)
        assert ack.version_id == version.id and ack.version.version == 2
    # Another person's notice is theirs until they acknowledge it.
    assert banner(text(staff.get("/dashboard/inbox")))


def test_the_acknowledgement_goes_back_only_to_a_path_on_this_site(auth, staff):
    staff.post_form(STAFF_PAGE, publish_form())
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = auth.post_form("/dashboard/policies/acknowledge",
                                {"version": str(versions()[-1].id), "next": bad})
        assert answer.status_code == 303
        assert answer.headers["Location"].endswith("/dashboard/"), answer.headers["Location"]


def test_unknown_or_unannounced_versions_are_not_recorded(app, auth):
    first = versions()[0]  # made by the CSRF helper's read of /privacy
    auth.post_form("/dashboard/policies/acknowledge", {"version": [str(first.id), "999", "x"]})
    with connection():
        assert PolicyAcknowledgement.select().count() == 0


def test_someone_who_joins_after_a_version_took_effect_sees_no_notice_of_it(app, staff, client):
    staff.post_form(STAFF_PAGE, publish_form())  # in effect at once
    make_user(app, email="late@example.com", name="Late Comer")
    late = Client(app.test_client())
    log_in(late, "late@example.com")
    assert banner(text(late.get("/dashboard/inbox"))) is None


def test_the_dashboard_notice_costs_one_statement(app, auth, staff, caplog):
    import logging

    staff.post_form(STAFF_PAGE, publish_form())
    auth.get("/dashboard/inbox")  # statements prepared
    caplog.set_level(logging.DEBUG, logger="peewee")
    caplog.clear()
    auth.get("/dashboard/inbox")
    policy = [r.getMessage() for r in caplog.records
              if r.name == "peewee" and "policy_" in r.getMessage()]
    assert len(policy) == 1, policy


# --- reading: history, diff ---------------------------------------------------------------


def test_history_lists_every_version_with_its_dates_and_summary(app, client):
    client.get("/privacy")
    publish(app, text="Second text.", summary="Shorter.")
    publish(app, text="Third text.", summary="Even shorter.", material=True,
            effective_on=(utcnow() + timedelta(days=40)).date())
    html = text(client.get("/privacy"))
    history = re.search(r'<section aria-labelledby="history-title".*?</section>', html, re.S).group(0)
    for n, summary in ((1, "before policies were kept as versions"), (2, "Shorter."),
                       (3, "Even shorter.")):
        row = re.search(rf'<tr id="version-{n}">.*?</tr>', history, re.S).group(0)
        assert summary in row
    assert "(current)" in re.search(r'<tr id="version-2">.*?</tr>', history, re.S).group(0)
    assert "(upcoming)" in re.search(r'<tr id="version-3">.*?</tr>', history, re.S).group(0)
    assert client.get("/privacy/versions/3").status_code == 200
    assert "Third text." in text(client.get("/privacy/versions/3"))
    assert client.get("/privacy/versions/9").status_code == 404


def test_the_diff_shows_inserted_and_deleted_words(app, client):
    client.get("/privacy")
    publish(app, text="We keep your name and e-mail address for support.", summary="One.")
    publish(app, text="We keep your name and postal address for <b>billing</b>.", summary="Two.")
    page = client.get("/privacy/diff?from=2&to=3")
    assert page.status_code == 200
    diff = re.search(r'<div class="policy-diff".*?</div>', text(page), re.S).group(0)
    assert "We keep your name and <del>e-mail</del><ins>postal</ins> address for " in diff
    assert "<del>support.</del><ins>&lt;b&gt;billing&lt;/b&gt;.</ins>" in diff
    assert "<b>" not in diff
    assert "1 words added" not in text(page) and "2 words added, 2 removed" in text(page)


def test_word_diff_keeps_the_text_and_marks_only_changes():
    diff = word_diff("the cat sat", "the dog sat down")
    assert str(diff) == "the <del>cat</del><ins>dog</ins> sat<ins> down</ins>"


@pytest.mark.parametrize("query, status, message", [
    ("", 400, "“from” is missing and “to” is missing"),
    ("?from=1", 400, "“to” is missing"),
    ("?from=a&to=2", 400, "“from” is not a version number"),
    ("?from=-1&to=2", 400, "“from” is not a version number"),
    ("?from=1&to=99999999999999999999", 400, "“to” is not a version number"),
    ("?from=1&to=7", 404, "There is no version 7 of the privacy policy"),
    ("?from=%00&to=%F0%9F%98%80", 400, "is not a version number"),
])
def test_bad_diff_numbers_get_a_clear_page_never_a_500(client, query, status, message):
    page = client.get("/privacy/diff" + query)
    assert page.status_code == status
    problem = re.search(r'<div class="alert alert-error" role="alert" id="diff-problem">(.*?)</div>',
                        text(page), re.S)
    assert problem and message in problem.group(1)


# --- nothing the author writes runs as script -------------------------------------------------


@pytest.mark.parametrize("source", [
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "[click](java&#x09;script:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    "<javascript:alert(1)>",
    "[click][ref]\n\n[ref]: javascript:alert(1)",
    "![x](data:image/png;base64,AAAA)",
])
def test_script_links_are_inert(source):
    html = str(to_html(source))
    assert "href" not in html and "src" not in html, html


def test_raw_html_is_shown_as_text(app, client):
    client.get("/privacy")
    publish(app, text='Hello <script>alert(1)</script> <img src=x onerror="alert(1)"> '
                      '<a href="javascript:alert(1)">x</a> [ok](https://example.com/terms)',
            summary="<b>bold</b>")
    page = text(client.get("/privacy"))
    body = re.search(r'<div class="policy-text">(.*?)</div>', page, re.S).group(1)
    assert "<script>" not in body and "<img" not in body and "<a href=\"javascript" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert '<a href="https://example.com/terms">ok</a>' in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


@pytest.mark.parametrize("url, ok", [
    ("https://example.com", True), ("mailto:a@example.com", True), ("/contact", True),
    ("#rights", True), ("javascript:alert(1)", False), (" javascript:alert(1)", False),
    ("java\tscript:alert(1)", False), ("data:text/html,x", False), ("file:///etc/passwd", False),
])
def test_only_safe_links_pass(url, ok):
    assert safe_link(url) is ok


# --- providers and device storage -----------------------------------------------------------


def test_the_providers_page_is_made_from_the_one_list(client):
    page = client.get("/privacy/providers")
    assert page.status_code == 200
    html = text(page)
    for provider in providers.PROVIDERS:
        assert f'id="provider-{provider.role}"' in html
        assert provider.purpose in html.replace("&#39;", "'")


def test_provider_hosts_follow_the_settings(app):
    config = {"SMTP_URL": "smtp://u:p@127.0.0.1:2525", "STRIPE_API_BASE": "http://127.0.0.1:12111"}
    assert providers.provider_for(config, "127.0.0.1", 2525).name == "E-mail delivery"
    assert providers.provider_for(config, "127.0.0.1", 12111).name == "Stripe"
    assert providers.provider_for({}, "api.stripe.com", 443).name == "Stripe"
    assert providers.provider_for(config, "127.0.0.1", 9) is None
    hosting = {"DATABASE_URL": "postgresql://u:p@db.internal:5432/x", "REDIS_URL": "redis://q:6379/0"}
    assert providers.provider_for(hosting, "db.internal", 5432).role == "hosting"
    assert providers.provider_for(hosting, "q", 6379).role == "hosting"


def test_the_cookies_page_is_made_from_the_table_and_says_no_banner(client):
    page = client.get("/cookies")
    assert page.status_code == 200
    html = text(page)
    for item in cookies.COOKIES:
        assert f"<code>{item.name.replace('<', '&lt;').replace('>', '&gt;')}</code>" in html
    assert "nothing to consent to" in html and "no cookie banner" in html
    assert cookies.listed("cookie", "lumnar_session")
    assert cookies.listed("localStorage", "lumnar-visitor:AbC_12-x")
    assert not cookies.listed("localStorage", "lumnar-visitor:")
    assert not cookies.listed("cookie", "lumnar-visitor:abc")


def test_the_only_cookie_a_page_sets_is_the_session_in_the_table(app, client, auth):
    for who in (client, auth):
        for url in ("/", "/privacy", "/signup", "/login", "/dashboard/inbox"):
            for header in who.get(url).headers.getlist("Set-Cookie"):
                name = header.split("=", 1)[0]
                assert cookies.listed("cookie", name), (url, header)
    assert app.config["SESSION_COOKIE_NAME"] == "lumnar_session"

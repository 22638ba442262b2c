"""Accounts: sign-up and verification, log-in and lock-out, forgotten password, e-mail and name
changes. Everything goes through HTTP with real SQLite, real SMTP on loopback and Huey inline."""

import re
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import pytest

from app.accounts import service
from app.accounts.models import LoginThrottle, Membership, User
from app.db import connection
from tests.conftest import (
    PASSWORD,
    Client,
    db_state,
    log_in,
    make_user,
    old_token,
    strip_csrf,
)
from tests.mailcatcher import link_in, text_of

NEW_PASSWORD = "a brand new passphrase"


def path_of(url: str) -> str:
    return urlsplit(url).path


def signup(client, name="Sam Signup", email="sam@example.com", password=PASSWORD, **extra):
    return client.post_form("/signup", {"name": name, "email": email, "password": password, **extra})


def get_user(email) -> User | None:
    with connection():
        return User.by_email(email)


def field_error(html: str, field: str) -> str:
    """The error text shown beside a form field (empty when there is none)."""
    match = re.search(rf'<p class="error" id="(?:\w+_)?{field}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


def alert(html: str) -> str:
    match = re.search(r'<div class="alert alert-error" role="alert"><p>([^<]*)</p>', html)
    return match.group(1) if match else ""


def new_client(app) -> Client:
    return Client(app.test_client())


# --- sign-up ------------------------------------------------------------------------------


def test_signup_creates_user_workspace_and_owner_membership(client, smtp):
    response = signup(client)
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    user = get_user("sam@example.com")
    assert user is not None and user.name == "Sam Signup"
    assert not user.is_verified
    assert user.password_hash != PASSWORD  # stored as a hash only
    with connection():
        memberships = list(Membership.of(user))
        assert [(m.role, m.workspace.name) for m in memberships] == [
            (Membership.OWNER, "Sam Signup's workspace")]


def test_signup_verification_link_verifies_and_then_login_works(client, smtp):
    signup(client)
    message = smtp.wait_for("sam@example.com", "Confirm your e-mail address")
    response = client.get(path_of(link_in(message)))
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert get_user("sam@example.com").is_verified
    assert "Your e-mail address is confirmed" in client.get("/login").get_data(as_text=True)
    log_in(client, "sam@example.com")
    assert client.get("/dashboard/settings").status_code == 200


def test_unverified_user_cannot_log_in_and_gets_a_new_link(client, smtp):
    signup(client)
    assert len(smtp.to("sam@example.com")) == 1
    before = db_state(User, Membership)
    response = client.post_form("/login", {"email": "sam@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert "Confirm your e-mail address first" in response.get_data(as_text=True)
    assert db_state(User, Membership) == before
    verifications = [m for m in smtp.to("sam@example.com") if "Confirm" in m["Subject"]]
    assert len(verifications) == 2
    # Not logged in: the dashboard still sends the visitor to the log-in page.
    assert client.get("/dashboard/settings").status_code == 302
    # The newly sent link works.
    client.get(path_of(link_in(verifications[-1])))
    assert get_user("sam@example.com").is_verified


def test_verification_link_with_a_bad_signature_is_refused(client, smtp):
    signup(client)
    link = link_in(smtp.wait_for("sam@example.com", "Confirm"))
    tampered = path_of(link)[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    before = db_state()
    response = client.get(tampered)
    assert response.status_code == 400
    assert "This link is not valid" in response.get_data(as_text=True)
    assert db_state() == before
    assert not get_user("sam@example.com").is_verified


def test_expired_verification_link_is_refused_but_a_recent_one_works(app, client, smtp):
    signup(client)
    user = get_user("sam@example.com")
    payload = {"uid": user.id, "email": user.email}
    expired = old_token(app, "verify", payload, service.VERIFY_MAX_AGE + timedelta(minutes=1))
    before = db_state()
    response = client.get(f"/verify/{expired}")
    assert response.status_code == 400
    assert "This link has expired" in response.get_data(as_text=True)
    assert db_state() == before
    assert not get_user("sam@example.com").is_verified
    # The same link one day old is still inside its two days: age alone decided.
    recent = old_token(app, "verify", payload, timedelta(days=1))
    assert client.get(f"/verify/{recent}").status_code == 303
    assert get_user("sam@example.com").is_verified


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "Use at least 10 characters."),
        ("qwertyuiop", "This password is one of the most common ones; choose another."),
    ],
    ids=["too-short", "common"],
)
def test_weak_password_is_refused_beside_the_field(client, smtp, password, message):
    before = db_state()
    response = signup(client, password=password)
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "password") == message
    assert db_state() == before
    assert smtp.messages == []


def test_common_password_list_is_the_one_the_rule_uses():
    from app.accounts import passwords

    assert "qwertyuiop" in passwords.common_passwords()


def test_invalid_email_is_refused_beside_the_field(client, smtp):
    before = db_state()
    response = signup(client, email="not-an-address")
    assert response.status_code == 422
    assert "Enter a valid e-mail address" in field_error(response.get_data(as_text=True), "email")
    assert db_state() == before
    assert smtp.messages == []


def test_duplicate_signup_looks_like_a_fresh_one_and_tells_the_owner(app, client, user, smtp):
    fresh = signup(new_client(app), name="Fresh Person", email="fresh@example.com")
    before = db_state(User, Membership)
    smtp.messages.clear()
    duplicate = signup(client, name="Fresh Person", email="Owner@Example.com", password="another long passphrase")

    # Same status and same page, whatever the address.
    assert duplicate.status_code == fresh.status_code == 200
    assert (strip_csrf(duplicate.get_data(as_text=True)).replace("owner@example.com", "ADDRESS")
            == strip_csrf(fresh.get_data(as_text=True)).replace("fresh@example.com", "ADDRESS"))
    # Nothing created or changed (the password stays the owner's own).
    assert db_state(User, Membership) == before
    log_in(new_client(app), "owner@example.com", PASSWORD)
    # The real owner hears about it; no verification link goes out.
    notice = smtp.wait_for("owner@example.com", "Someone tried to sign up")
    assert "already has one" in notice.get_body(preferencelist=("plain",)).get_content()
    assert [m["Subject"] for m in smtp.messages] == [notice["Subject"]]


def test_signup_with_the_honeypot_filled_is_refused_and_creates_nothing(client, smtp):
    before = db_state()
    response = signup(client, website="http://spam.example")
    assert response.status_code == 400
    assert "We could not understand that request" in response.get_data(as_text=True)
    assert db_state() == before
    assert smtp.messages == []


# --- log-in ---------------------------------------------------------------------------------

GENERIC = "That e-mail and password do not match an account."


def test_wrong_password_and_unknown_email_get_the_same_generic_answer(app, user):
    before = db_state(User, Membership)
    wrong_password = new_client(app).post_form(
        "/login", {"email": "owner@example.com", "password": "not the password"})
    unknown_email = new_client(app).post_form(
        "/login", {"email": "nobody@example.com", "password": "not the password"})
    assert wrong_password.status_code == unknown_email.status_code == 422
    first = wrong_password.get_data(as_text=True)
    second = unknown_email.get_data(as_text=True)
    assert alert(first) == alert(second) == GENERIC
    assert (strip_csrf(first).replace("owner@example.com", "X")
            == strip_csrf(second).replace("nobody@example.com", "X"))
    assert db_state(User, Membership) == before  # only the failure counters moved


def fail_logins(client, email, times):
    return [client.post_form("/login", {"email": email, "password": "wrong password!"})
            for _ in range(times)]


def client_at(app, address: str) -> Client:
    """A browser on another network address (the lock-out tells clients apart by it)."""
    flask_client = app.test_client()
    flask_client.environ_base["REMOTE_ADDR"] = address
    return Client(flask_client)


def address_row(email) -> LoginThrottle:
    with connection():
        return LoginThrottle.get(LoginThrottle.email == email,
                                 LoginThrottle.client == LoginThrottle.ANY_CLIENT)


def wait_passes(email):
    """The address's slow-down wait is over (as it would be a minute later)."""
    with connection():
        LoginThrottle.update(not_before=None).where(LoginThrottle.email == email).execute()


def test_ten_failed_logins_lock_that_client_out_even_for_the_right_password(client, user):
    responses = fail_logins(client, "owner@example.com", 10)
    assert [r.status_code for r in responses] == [422] * 9 + [429]
    locked_text = alert(responses[-1].get_data(as_text=True))
    assert locked_text.startswith("Too many failed attempts: log-in for this address is locked")
    hash_before = get_user("owner@example.com").password_hash
    wait_passes("owner@example.com")

    right = client.post_form("/login", {"email": "owner@example.com", "password": PASSWORD})
    assert right.status_code == 429
    assert alert(right.get_data(as_text=True)) == locked_text
    assert client.get("/dashboard/settings").status_code == 302  # still not logged in
    assert get_user("owner@example.com").password_hash == hash_before


def test_a_stranger_failing_ten_times_cannot_lock_the_owner_out(app, user):
    stranger = client_at(app, "203.0.113.9")
    assert fail_logins(stranger, "owner@example.com", 10)[-1].status_code == 429
    wait_passes("owner@example.com")  # the address is only slowed, for seconds

    owner = client_at(app, "198.51.100.7")
    assert owner.post_form("/login", {"email": "owner@example.com",
                                      "password": PASSWORD}).status_code == 303
    assert owner.get("/dashboard/settings").status_code == 200
    # The owner getting in does not lift the stranger's lock.
    wait_passes("owner@example.com")
    again = stranger.post_form("/login", {"email": "owner@example.com", "password": PASSWORD})
    assert again.status_code == 429


def test_failures_from_many_clients_slow_the_address_with_a_growing_wait(app, user):
    clients = [client_at(app, f"203.0.113.{n}") for n in range(1, 15)]
    answers = [fail_logins(c, "owner@example.com", 1)[0] for c in clients[:10]]
    assert [r.status_code for r in answers] == [422] * 10  # nobody was locked out
    slowed = fail_logins(clients[10], "owner@example.com", 1)[0]
    assert slowed.status_code == 429
    assert alert(slowed.get_data(as_text=True)).startswith(
        "Too many failed attempts for this address: wait 1 seconds")

    waits = []
    for c in clients[11:]:
        wait_passes("owner@example.com")
        assert fail_logins(c, "owner@example.com", 1)[0].status_code == 422
        row = address_row("owner@example.com")
        waits.append((row.not_before - row.last_failure_at).total_seconds())
    assert waits == [2, 4, 8]
    with connection():
        per_client = LoginThrottle.select().where(LoginThrottle.client != LoginThrottle.ANY_CLIENT)
        assert all(row.locked_until is None for row in per_client)


def test_the_address_wait_never_passes_a_minute(app, user):
    for n in range(20):
        wait_passes("owner@example.com")
        fail_logins(client_at(app, f"203.0.113.{n}"), "owner@example.com", 1)
    row = address_row("owner@example.com")
    assert (row.not_before - row.last_failure_at).total_seconds() == 60


def test_the_owner_is_emailed_once_when_their_address_is_attacked(app, user, smtp):
    for n in range(14):
        wait_passes("owner@example.com")
        fail_logins(client_at(app, f"203.0.113.{n}"), "owner@example.com", 1)
    warnings = [m for m in smtp.to("owner@example.com") if "trying to log in" in m["Subject"]]
    assert len(warnings) == 1
    assert "not locked" in text_of(warnings[0])


def test_lockout_is_the_same_for_an_address_without_an_account(app, user, smtp):
    known = fail_logins(new_client(app), "owner@example.com", 10)[-1]
    unknown = fail_logins(new_client(app), "ghost@example.com", 10)[-1]
    assert known.status_code == unknown.status_code == 429
    assert alert(known.get_data(as_text=True)) == alert(unknown.get_data(as_text=True))
    with connection():
        assert User.by_email("ghost@example.com") is None  # counting created no account
        assert LoginThrottle.get(LoginThrottle.email == "ghost@example.com",
                                 LoginThrottle.client == "127.0.0.1").locked_until
    assert smtp.to("ghost@example.com") == []


def browser_destination(location: str, page="http://localhost/login") -> str:
    """Where a browser goes for this Location: browsers drop tabs and newlines and read a
    backslash as a slash in http(s) URLs, which Python's urljoin does not do by itself."""
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return urljoin(page, cleaned)


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example", "http:/evil.example", "/\t/evil.example"],
)
def test_login_next_parameter_refuses_other_sites(client, user, target):
    response = client.post_form(
        "/login", {"email": "owner@example.com", "password": PASSWORD, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/"


@pytest.mark.parametrize("target", ["/\\evil.example", "/\\/evil.example", "\\\\evil.example"])
def test_login_next_parameter_with_backslashes_stays_on_the_site(client, user, target):
    response = client.post_form(
        "/login", {"email": "owner@example.com", "password": PASSWORD, "next": target})
    assert response.status_code == 303
    assert urlsplit(browser_destination(response.headers["Location"])).netloc == "localhost"


def test_login_next_parameter_keeps_a_local_path(client, user):
    page = client.get("/login?next=/dashboard/team").get_data(as_text=True)
    assert 'value="/dashboard/team"' in page
    response = client.post_form(
        "/login", {"email": "owner@example.com", "password": PASSWORD, "next": "/dashboard/team"})
    assert response.headers["Location"] == "/dashboard/team"


def test_login_over_htmx_navigates_with_hx_redirect(client, user):
    response = client.post_form("/login", {"email": "owner@example.com", "password": PASSWORD,
                                           "next": "/dashboard/team"}, htmx=True)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/dashboard/team"
    assert client.get("/dashboard/settings").status_code == 200


# --- forgotten password -----------------------------------------------------------------------


def test_forgot_password_answers_the_same_for_known_and_unknown_addresses(app, user, smtp):
    smtp.messages.clear()
    known = new_client(app).post_form("/password/forgot", {"email": "owner@example.com"})
    unknown = new_client(app).post_form("/password/forgot", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert (strip_csrf(known.get_data(as_text=True)).replace("owner@example.com", "X")
            == strip_csrf(unknown.get_data(as_text=True)).replace("nobody@example.com", "X"))
    assert [m["To"] for m in smtp.messages] == ["owner@example.com"]


def reset_link(client, smtp, email="owner@example.com") -> str:
    client.post_form("/password/forgot", {"email": email})
    return path_of(link_in(smtp.wait_for(email, "Reset your Lumnar password")))


def test_reset_link_works_once(app, client, user, smtp):
    link = reset_link(client, smtp)
    assert client.get(link).status_code == 200
    response = client.post_form(link, {"password": NEW_PASSWORD})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    smtp.wait_for("owner@example.com", "password was changed")
    log_in(new_client(app), "owner@example.com", NEW_PASSWORD)
    hash_after_reset = get_user("owner@example.com").password_hash

    reused_get = client.get(link)
    assert reused_get.status_code == 400
    assert "already used" in reused_get.get_data(as_text=True)
    reused_post = client.post_form(link, {"password": "yet another passphrase"})
    assert reused_post.status_code == 400
    assert "already used" in reused_post.get_data(as_text=True)
    assert get_user("owner@example.com").password_hash == hash_after_reset


def test_expired_reset_link_is_refused(app, client, user):
    before = db_state(User)
    token = old_token(app, "reset", {"uid": user.id, "fp": service._fingerprint(user.password_hash)},
                      service.RESET_MAX_AGE + timedelta(minutes=1))
    shown = client.get(f"/password/reset/{token}")
    assert shown.status_code == 400
    assert "This link has expired" in shown.get_data(as_text=True)
    posted = client.post_form(f"/password/reset/{token}", {"password": NEW_PASSWORD})
    assert posted.status_code == 400
    assert "This link has expired" in posted.get_data(as_text=True)
    assert db_state(User) == before


def test_weak_new_password_on_reset_is_refused_and_nothing_changes(client, user, smtp):
    link = reset_link(client, smtp)
    before = db_state(User)
    response = client.post_form(link, {"password": "short"})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "password") == "Use at least 10 characters."
    assert db_state(User) == before
    assert client.get(link).status_code == 200  # the link still works


def test_password_reset_ends_every_session(app, auth, smtp):
    assert auth.get("/dashboard/settings").status_code == 200
    other = new_client(app)
    link = reset_link(other, smtp)
    assert other.post_form(link, {"password": NEW_PASSWORD}).status_code == 303
    response = auth.get("/dashboard/settings")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# --- change e-mail --------------------------------------------------------------------------


def request_email_change(client, new_email="new@example.com", password=PASSWORD):
    return client.post_form("/dashboard/settings/email",
                            {"new_email": new_email, "current_password": password})


def test_email_change_sends_link_to_new_address_and_notice_to_old(app, auth, smtp):
    response = request_email_change(auth)
    assert response.status_code == 200
    assert "We sent a confirmation link to new@example.com" in response.get_data(as_text=True)
    confirm = smtp.wait_for("new@example.com", "Confirm your new e-mail address")
    notice = smtp.wait_for("owner@example.com", "is being changed")
    assert "new@example.com" in notice.get_body(preferencelist=("plain",)).get_content()
    assert get_user("owner@example.com") is not None  # nothing changes before confirming

    response = auth.get(path_of(link_in(confirm)))
    assert response.status_code == 303
    assert get_user("owner@example.com") is None
    assert get_user("new@example.com").is_verified
    assert "Your e-mail address is now new@example.com" in auth.get(
        "/dashboard/settings").get_data(as_text=True)
    log_in(new_client(app), "new@example.com")


def test_email_change_link_works_once(auth, smtp):
    request_email_change(auth)
    link = path_of(link_in(smtp.wait_for("new@example.com", "Confirm")))
    assert auth.get(link).status_code == 303
    before = db_state(User)
    reused = auth.get(link)
    assert reused.status_code == 400
    assert "already used" in reused.get_data(as_text=True)
    assert db_state(User) == before


def test_email_change_keeps_old_address_when_new_one_was_taken_meanwhile(app, auth, smtp):
    request_email_change(auth)
    link = path_of(link_in(smtp.wait_for("new@example.com", "Confirm")))
    make_user(app, email="new@example.com", name="Quick Taker")
    before = db_state(User)
    response = auth.get(link)
    assert response.status_code == 409
    assert "Another account uses that address now" in response.get_data(as_text=True)
    assert db_state(User) == before
    assert get_user("owner@example.com").name == "Olive Owner"


def test_email_change_with_wrong_password_is_refused(auth, smtp):
    smtp.messages.clear()
    before = db_state()
    response = request_email_change(auth, password="not my password")
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "current_password") == \
        "Your current password is not right."
    assert db_state() == before
    assert smtp.messages == []


# --- change name -----------------------------------------------------------------------------


def test_name_change_saves_the_new_name(auth):
    response = auth.post_form("/dashboard/settings/name", {"name": "  Olivia Owner  "})
    assert response.status_code == 200
    assert "Saved." in response.get_data(as_text=True)
    assert get_user("owner@example.com").name == "Olivia Owner"


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Enter a name."), ("   ", "Enter a name."), ("x" * 121, "Use at most 120 characters.")],
    ids=["empty", "blank", "121-chars"],
)
def test_empty_or_too_long_name_is_refused(auth, name, message):
    before = db_state()
    response = auth.post_form("/dashboard/settings/name", {"name": name})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "name") == message
    assert db_state() == before


def test_name_of_exactly_120_characters_is_accepted(auth):
    assert auth.post_form("/dashboard/settings/name", {"name": "y" * 120}).status_code == 200
    assert get_user("owner@example.com").name == "y" * 120

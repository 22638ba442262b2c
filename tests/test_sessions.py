"""Sessions: how they end (log-out, log-out everywhere, password change, idle and absolute
lifetimes) and how their cookie is sent. Time passes by editing the session's own timestamps
through `session_transaction()`, never by sleeping."""

import time
from datetime import timedelta

import pytest

from app.accounts.models import User
from app.db import connection
from tests.conftest import PASSWORD, Client, build_app, db_state, log_in, make_user

NEW_PASSWORD = "a brand new passphrase"


def logged_in(client) -> bool:
    response = client.get("/dashboard/settings")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    return False


def second_client(app) -> Client:
    other = Client(app.test_client())
    log_in(other)
    return other


def hash_of(email="owner@example.com") -> str:
    with connection():
        return User.by_email(email).password_hash


def test_log_out_everywhere_ends_the_other_sessions_too(app, auth):
    other = second_client(app)
    assert logged_in(auth) and logged_in(other)
    response = auth.post_form("/logout-everywhere")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert not logged_in(other)
    assert not logged_in(auth)
    # A fresh log-in works again afterwards.
    log_in(other)
    assert logged_in(other)


def test_password_change_ends_other_sessions_but_keeps_this_one(app, auth, smtp):
    other = second_client(app)
    response = auth.post_form("/dashboard/settings/password",
                              {"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 200
    assert "Password changed. Other sessions are logged out." in response.get_data(as_text=True)
    assert logged_in(auth)
    assert not logged_in(other)
    smtp.wait_for("owner@example.com", "password was changed")
    log_in(Client(app.test_client()), password=NEW_PASSWORD)


def test_password_change_with_wrong_current_password_is_refused(app, auth, smtp):
    other = second_client(app)
    smtp.messages.clear()
    before = db_state()
    response = auth.post_form("/dashboard/settings/password",
                              {"current_password": "not my password", "new_password": NEW_PASSWORD})
    assert response.status_code == 422
    assert "Your current password is not right." in response.get_data(as_text=True)
    assert db_state() == before  # same hash, same session epoch
    assert logged_in(auth) and logged_in(other)
    assert smtp.messages == []


def test_password_change_to_a_weak_password_is_refused(auth):
    before = db_state()
    response = auth.post_form("/dashboard/settings/password",
                              {"current_password": PASSWORD, "new_password": "short"})
    assert response.status_code == 422
    assert "Use at least 10 characters." in response.get_data(as_text=True)
    assert db_state() == before


def age_session(client, **seconds_ago):
    """Move the session's timestamps (`iat` = logged in, `seen` = last used) into the past."""
    now = int(time.time())
    with client.session_transaction() as session:
        for key, ago in seconds_ago.items():
            session[key] = now - ago


@pytest.mark.config(SESSION_IDLE=timedelta(minutes=5))
def test_idle_session_ends(auth):
    age_session(auth, seen=5 * 60 + 30)
    assert not logged_in(auth)
    with auth.session_transaction() as session:
        assert "uid" not in session  # the stale session is cleared, not just ignored


@pytest.mark.config(SESSION_IDLE=timedelta(minutes=5))
def test_session_used_within_the_idle_limit_stays_and_is_refreshed(auth):
    age_session(auth, seen=4 * 60)
    assert logged_in(auth)
    with auth.session_transaction() as session:
        assert int(time.time()) - session["seen"] < 60  # "last seen" moved to now


@pytest.mark.config(SESSION_MAX=timedelta(hours=1))
def test_session_ends_after_its_absolute_lifetime_even_when_used(auth):
    age_session(auth, iat=59 * 60, seen=10)
    assert logged_in(auth)
    age_session(auth, iat=60 * 60 + 30, seen=10)
    assert not logged_in(auth)


def test_logout_clears_the_session(auth):
    response = auth.post_form("/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    with auth.session_transaction() as session:
        assert "uid" not in session
    assert not logged_in(auth)
    assert "You are logged out." in auth.get("/login").get_data(as_text=True)


def test_logout_over_htmx_navigates_with_hx_redirect(auth):
    response = auth.post_form("/logout", htmx=True)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login"
    assert not logged_in(auth)


def cookie_attributes(response) -> dict:
    header = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("lumnar_session="))
    attributes = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        attributes[key.lower()] = value
    return attributes


def test_session_cookie_is_httponly_and_samesite_lax_and_not_secure_over_http(client, user):
    attributes = cookie_attributes(log_in(client))
    assert "httponly" in attributes
    assert attributes["samesite"] == "Lax"
    assert "secure" not in attributes


def test_session_cookie_is_secure_when_base_url_is_https(monkeypatch, app_config):
    # The production path: LUMNAR_BASE_URL decides, as the operator sets it.
    monkeypatch.setenv("LUMNAR_BASE_URL", "https://localhost")
    config = {k: v for k, v in app_config.items() if k != "BASE_URL"}
    app = build_app(config)
    make_user(app)
    client = Client(app.test_client())
    csrf = client.csrf()
    response = client.raw.post(
        "/login", data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": csrf},
        base_url="https://localhost", headers={"Referer": "https://localhost/login"})
    assert response.status_code == 303
    attributes = cookie_attributes(response)
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["samesite"] == "Lax"
    # (HSTS is added at the ASGI root: tests/test_headers_everywhere.py.)


def copy_of_cookie(app, client) -> Client:
    """Another browser holding a stolen copy of `client`'s session cookie."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    thief = Client(app.test_client())
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie.value)
    return thief


def test_log_out_ends_the_session_even_for_a_copied_cookie(app, auth):
    thief = copy_of_cookie(app, auth)
    assert logged_in(thief)
    auth.post_form("/logout")
    assert not logged_in(thief)


def test_settings_list_each_session_and_can_end_one_of_them(app, auth):
    from app.accounts.models import UserSession

    other = Client(app.test_client())
    other.raw.environ_base["HTTP_USER_AGENT"] = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36")
    log_in(other)
    page = auth.get("/dashboard/settings").get_data(as_text=True)
    assert "Chrome on Windows" in page and "(this browser)" in page
    with connection():
        other_row = UserSession.select().order_by(UserSession.id.desc()).first()
    response = auth.post_form(f"/dashboard/settings/sessions/{other_row.id}/end")
    assert response.status_code == 303
    assert not logged_in(other)
    assert logged_in(auth)


def test_ending_a_session_of_another_user_is_refused(app, auth):
    from app.accounts.models import UserSession

    make_user(app, email="someone@example.com", name="Someone")
    stranger = Client(app.test_client())
    log_in(stranger, email="someone@example.com")
    with connection():
        theirs = UserSession.select().join(User).where(User.email == "someone@example.com").first()
    before = db_state(UserSession)
    response = auth.post_form(f"/dashboard/settings/sessions/{theirs.id}/end")
    assert response.status_code == 404
    assert db_state(UserSession) == before
    assert logged_in(stranger)

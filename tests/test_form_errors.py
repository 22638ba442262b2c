"""A post a service refuses is answered one way (app.rendering.render_form_errors): 422, or the
rule's own status, with the rule's message beside the field it names, in the whole page for a
plain post and in the form's fragment alone for htmx."""

import re

import pytest

from tests.conftest import PASSWORD, Client, log_in, make_user

SITE_FORM = {
    "name": "Corner Shop", "greeting": "Hello!", "away_message": "We are out.",
    "accent_color": "#AA33CC", "retention_days": "30",
}

# (what, url, form, the field the message stands beside, the message)
REFUSED = [
    ("a site whose origin is not one", "/dashboard/sites",
     {**SITE_FORM, "allowed_origins": "shop.example.com"},
     "allowed_origins", "is not an origin like https://shop.example.com"),
    ("a saved reply whose shortcut is taken", "/dashboard/saved-replies",
     {"shortcut": "ship", "body": "Again"},
     "shortcut", "A saved reply with this shortcut exists already."),
    ("a password change with the wrong current password", "/dashboard/settings/password",
     {"current_password": "not my password", "new_password": "a brand new passphrase"},
     "current_password", "Your current password is not right."),
    ("an e-mail change to the same address", "/dashboard/settings/email",
     {"new_email": "owner@example.com", "current_password": PASSWORD},
     "new_email", "That is already your address."),
    ("an invitation for a member", "/dashboard/team/invitations",
     {"email": "owner@example.com", "role": "agent"},
     "email", "That person is already a member of this workspace."),
    ("automation settings with an unknown time zone", "/dashboard/automations/settings",
     {"timezone": "Mars/Olympus", "run_log_days": "14"},
     "timezone", "Choose a time zone from the list"),
]


def beside(html: str, field: str) -> str:
    """The error text shown beside a field (its id may carry the form's prefix)."""
    match = re.search(rf'<p class="error" id="(?:\w+-)?{field}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


def is_page(html: str) -> bool:
    return "<!doctype html>" in html


@pytest.mark.parametrize("what, url, form, field, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_each_refused_form_answers_422_with_the_message_beside_its_field(auth, what, url, form,
                                                                        field, message):
    if url == "/dashboard/saved-replies":
        assert auth.post_form(url, {"shortcut": "ship", "body": "First"}).status_code == 303
    page = auth.post_form(url, form)
    fragment = auth.post_form(url, form, htmx=True)
    for response, whole in ((page, True), (fragment, False)):
        html = response.get_data(as_text=True)
        assert response.status_code == 422, html
        assert message in beside(html, field), html
        assert is_page(html) is whole


def test_a_refusal_that_names_no_field_stands_above_the_form_with_its_own_status(app, client,
                                                                                 user):
    """The login's refusal belongs to no one field; a lockout keeps its own 429."""
    wrong = {"email": "owner@example.com", "password": "not my password"}
    for htmx, whole in ((False, True), (True, False)):
        response = client.post_form("/login", wrong, htmx=htmx)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert re.search(r'<div class="alert alert-error" role="alert">\s*<p>That e-mail and '
                         r'password do not match an account.</p>', html), html
        assert is_page(html) is whole
    for _ in range(20):
        response = client.post_form("/login", wrong)
        if response.status_code != 422:
            break
    assert response.status_code == 429
    assert 'class="alert alert-error"' in response.get_data(as_text=True)


def test_a_refusal_with_no_form_to_stand_beside_is_the_pages_problem(auth):
    from app.accounts.models import Membership, User
    from app.db import connection

    with connection():
        mine = Membership.get(Membership.user == User.by_email("owner@example.com")).id
    for htmx, whole in ((False, True), (True, False)):
        response = auth.post_form(f"/dashboard/team/members/{mine}/remove", htmx=htmx)
        html = response.get_data(as_text=True)
        assert response.status_code == 409
        assert ('<p class="alert alert-error" role="alert">You cannot remove yourself from your '
                'own workspace.</p>') in html
        assert is_page(html) is whole


def test_settings_a_service_refuses_for_several_fields_stand_beside_each(app):
    """The staff form's rule error (ConfigError) names several fields of two forms at once."""
    from app.accounts.models import Membership, User
    from app.db import connection

    make_user(app)
    make_user(app, email="staff@lumnar.example", name="Stella Staff")
    with connection():
        User.update(is_staff=True).where(User.email == "staff@lumnar.example").execute()
        ws = Membership.get(Membership.user == User.by_email("owner@example.com")).workspace_id
    staff = Client(app.test_client())
    log_in(staff, "staff@lumnar.example")
    form = {"flow": "chat_lead_crm", "name": "", "trigger": "chat",
            "chat_event": "visitor_left_email", "cron": "", "max_attempts": "99",
            "cfg-base_url": "not a url", "cfg-credential": "", "cfg-extra": ""}
    for htmx, whole in ((False, True), (True, False)):
        response = staff.post_form(f"/staff/workspaces/{ws}/automations", form, htmx=htmx)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        for field in ("name", "max_attempts", "cfg-base_url"):
            assert beside(html, field), (field, html)
        assert is_page(html) is whole

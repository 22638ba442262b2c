"""Security alerts by e-mail: a sign-in from a browser not seen before, a credential added,
replaced or removed, and a daily digest of Lumnar staff's looks at the workspace. Each says
what happened, when, from which browser, and what to do if it was not the reader."""

from app.accounts import alerts
from app.accounts.models import Workspace
from app.db import connection
from app.mail.models import OutboundEmail
from app.staff.models import AuditEntry
from tests.chat_fixtures import ws_fixture  # noqa: F401  (fixture)
from tests.conftest import PASSWORD, staff_client

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def mails(subject_part: str) -> list[OutboundEmail]:
    with connection():
        return [m for m in OutboundEmail.select().order_by(OutboundEmail.id) if subject_part in m.subject]


def sign_in(client, user_agent: str):
    answer = client.post_form("/login", {"email": "owner@example.com", "password": PASSWORD},
                              headers={"User-Agent": user_agent})
    assert answer.status_code == 303
    return answer


def test_a_sign_in_from_a_browser_not_seen_before_is_told_by_e_mail(app, client, user):
    sign_in(client, CHROME)  # the first sign-in: nothing to compare with, nobody told
    sign_in(app_client(app), CHROME)  # the same browser again
    assert mails("New sign-in") == []
    sign_in(app_client(app), FIREFOX)
    [alert] = mails("New sign-in")
    assert alert.to == "owner@example.com"
    assert "Firefox on Windows" in alert.text_body and "When:" in alert.text_body
    assert "log out everywhere and change your password" in alert.text_body
    sign_in(app_client(app), FIREFOX)
    assert len(mails("New sign-in")) == 1  # known now


def app_client(app):
    from tests.conftest import Client

    return Client(app.test_client())


def test_owners_are_told_when_a_credential_is_added_replaced_or_removed(app, auth, ws):
    form = {"platform": "Shopify", "label": "Shop API", "kind": "api_token", "secret": "shpat_abcdef123456"}
    assert auth.post_form("/dashboard/credentials", form, headers={"User-Agent": FIREFOX}).status_code == 303
    from app.automations.models import Credential

    with connection():
        credential = Credential.get()
    assert auth.post_form(f"/dashboard/credentials/{credential.id}/replace",
                          {f"c{credential.id}-{k}": v for k, v in {**form, "secret": "shpat_zzzzzz987654"}.items()},
                          headers={"User-Agent": FIREFOX}).status_code == 303
    assert auth.post_form(f"/dashboard/credentials/{credential.id}/delete").status_code == 303
    subjects = [m.subject for m in mails("A credential was")]
    assert subjects == ["A credential was added in your Lumnar workspace",
                        "A credential was replaced in your Lumnar workspace",
                        "A credential was removed in your Lumnar workspace"]
    added = mails("A credential was added")[0]
    assert "“Shop API”" in added.text_body and "Firefox on Windows" in added.text_body
    assert "shpat_" not in "".join(m.text_body + m.html_body for m in mails("A credential"))


def test_staff_access_is_told_once_a_day_in_one_digest(app, user, ws):
    staff = staff_client(app)
    for _ in range(3):
        assert staff.get(f"/staff/workspaces/{ws}").status_code == 200
    with app.test_request_context(), connection():
        assert alerts.send_access_digests() == 1
        assert alerts.send_access_digests() == 0  # nothing new: no e-mail
    [digest] = mails("Lumnar staff accessed your workspace")
    assert digest.to == "owner@example.com"
    assert digest.text_body.count("staff@lumnar.example viewed the automations list") == 3
    with connection():
        assert Workspace.get_by_id(ws).access_digest_after == AuditEntry.select().order_by(
            AuditEntry.id.desc()).get().id
    staff.get(f"/staff/workspaces/{ws}")
    with app.test_request_context(), connection():
        assert alerts.send_access_digests() == 1
    assert mails("Lumnar staff accessed")[-1].text_body.count("viewed the automations list") == 1

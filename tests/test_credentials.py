"""The credentials page: secrets are write-only, shown masked, scoped to the workspace."""

from pathlib import Path

import pytest

from app.automations import vault
from app.automations.models import Credential
from app.db import connection, database
from tests.conftest import Client, db_state, log_in, make_user

TOKEN = "pat-9f8e7d6c5b4a39281706-wxyz"


def add(client, **fields):
    data = {"platform": "HubSpot", "label": "CRM", "kind": "api_token", "secret": TOKEN}
    data.update(fields)
    return client.post_form("/dashboard/credentials", data)


def test_a_saved_secret_is_shown_only_masked_and_is_not_in_the_page_or_the_database(app, auth):
    assert add(auth).status_code == 303
    page = auth.get("/dashboard/credentials").get_data(as_text=True)
    assert "••••wxyz" in page
    assert TOKEN not in page and TOKEN[:-4] not in page
    with connection():
        database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        cred = Credential.get()
    db = Path(app.config["DATABASE"])
    raw = b"".join(p.read_bytes() for p in (db, Path(str(db) + "-wal")) if p.exists())
    assert TOKEN.encode() not in raw
    with app.app_context(), connection():
        assert vault.reveal(cred) == {"token": TOKEN}


@pytest.mark.parametrize("fields, message", [
    ({"secret": ""}, "Enter the secret"),
    ({"platform": ""}, "Name the platform"),
    ({"kind": "login", "username": ""}, "Enter the username."),
    ({"kind": "webhook_url", "secret": "http://plain.example/hook"}, "starts with https://"),
    ({"kind": "secret_map", "secret": "", "secret_map": "no equals sign here"}, "name = value"),
    ({"kind": "made-up"}, "Not a valid choice"),
])
def test_bad_credential_input_is_refused_without_echoing_the_secret(auth, fields, message):
    before = db_state(Credential)
    response = add(auth, **fields)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in body
    assert TOKEN not in body
    assert db_state(Credential) == before


def test_replacing_a_credential_changes_its_secret(app, auth):
    add(auth)
    with connection():
        cred = Credential.get()
    new = "pat-0000111122223333444455-abcd"
    response = auth.post_form(f"/dashboard/credentials/{cred.id}/replace", {
        f"c{cred.id}-platform": "HubSpot", f"c{cred.id}-label": "CRM",
        f"c{cred.id}-kind": "api_token", f"c{cred.id}-secret": new})
    assert response.status_code == 303
    with app.app_context(), connection():
        assert vault.reveal(Credential.get_by_id(cred.id)) == {"token": new}


def test_agents_cannot_change_credentials_and_other_workspaces_get_404(app, auth):
    add(auth)
    with connection():
        cred = Credential.get()
    make_user(app, email="stranger@example.com", name="Stranger")
    stranger = Client(app.test_client())
    log_in(stranger, email="stranger@example.com")
    before = db_state(Credential)
    assert stranger.post_form(f"/dashboard/credentials/{cred.id}/delete").status_code == 404
    assert "CRM" not in stranger.get("/dashboard/credentials").get_data(as_text=True)
    assert db_state(Credential) == before

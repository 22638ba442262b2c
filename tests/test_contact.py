"""One contact address, from one setting, on one contact page; one list of allowed file types."""

import re
from pathlib import Path

import pytest

from app import config
from app.chat import files
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    conversation_fixture,
    online_fixture,
    reply,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
ADDRESS = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
CONFIGURED = "hello@shop-owner.example"


def main_of(html: str) -> str:
    """The page's own content: the footer's link to the contact page must not stand in for it."""
    return html[html.index("<main"):html.index("</main>")]


def contact_links(html: str) -> list[str]:
    return re.findall(r'href="([^"]*contact[^"]*)"', main_of(html))


@pytest.mark.config(CONTACT_EMAIL=CONFIGURED)
def test_the_contact_page_shows_the_configured_address_as_a_mailto_link(client):
    response = client.get("/contact")
    assert response.status_code == 200
    assert f'<a href="mailto:{CONFIGURED}">{CONFIGURED}</a>' in text(response)


def test_the_contact_address_is_read_from_lumnar_contact_email(monkeypatch, tmp_path):
    monkeypatch.setenv("LUMNAR_CONTACT_EMAIL", CONFIGURED)
    assert config.load({"DATA_DIR": tmp_path, "SECRET_KEY": "x"})["CONTACT_EMAIL"] == CONFIGURED
    monkeypatch.delenv("LUMNAR_CONTACT_EMAIL")
    default = config.ENV_VARS["LUMNAR_CONTACT_EMAIL"][0]
    assert config.load({"DATA_DIR": tmp_path, "SECRET_KEY": "x"})["CONTACT_EMAIL"] == default


@pytest.mark.config(CONTACT_EMAIL=CONFIGURED)
def test_the_privacy_page_gives_the_configured_address_and_links_to_a_contact_page_that_answers(
        client):
    html = text(client.get("/privacy"))
    assert f"mailto:{CONFIGURED}" in html
    links = contact_links(html)
    assert links
    for link in links:
        page = client.get(link)
        assert page.status_code == 200 and CONFIGURED in text(page)


@pytest.mark.config(CONTACT_EMAIL=CONFIGURED)
def test_the_privacy_and_data_page_links_to_a_contact_page_that_answers(auth, ws):
    response = auth.get("/dashboard/privacy")
    assert response.status_code == 200
    links = contact_links(text(response))
    assert links
    for link in links:
        page = auth.get(link)
        assert page.status_code == 200 and CONFIGURED in text(page)


def test_no_template_spells_an_email_address():
    # Every address shown comes from contact_email() (LUMNAR_CONTACT_EMAIL); one written into
    # a template would go stale the day the setting changes.
    spelt = {str(path.relative_to(TEMPLATES)): ADDRESS.findall(path.read_text())
             for path in TEMPLATES.rglob("*") if path.is_file()}
    assert not {name: found for name, found in spelt.items() if found}


# --- the file pickers ------------------------------------------------------------------------


def accepted(html: str) -> set[str]:
    """The types the page's one file picker offers."""
    (value,) = re.findall(r'<input[^>]*type="file"[^>]*accept="([^"]*)"', html)
    return set(value.split(","))


def test_both_file_pickers_offer_exactly_the_types_the_server_allows(auth, visitor, conversation):
    allowed = set(files.ALLOWED)
    # The widget's compose form: in the chat the frame loads, and fresh after a message.
    assert accepted(text(visitor.chat())) == allowed
    assert accepted(text(visitor.send("Still there?"))) == allowed
    # The dashboard's reply form: on the conversation page, and fresh after a reply.
    page = auth.get(f"/dashboard/conversations/{conversation.id}")
    assert page.status_code == 200
    assert accepted(text(page)) == allowed
    answer = reply(auth, conversation.id, {"body": "Yes, we do."}, htmx=True)
    assert answer.status_code == 200
    assert accepted(text(answer)) == allowed

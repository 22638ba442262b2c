"""Visitors who gave no name are called by a friendly one (an adjective and an animal), made from
their public id at the one place every screen asks (Visitor.label): the same name in the inbox,
on the conversation's page, in the team's e-mails, today and tomorrow."""

import re

from app.widget.models import Visitor
from app.widget.names import ADJECTIVES, ANIMALS, friendly_name
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    online_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.mailcatcher import text_of


def test_a_friendly_name_is_an_adjective_and_an_animal_fixed_by_the_public_id():
    name = friendly_name("NO7z2-k3Jq9vXbWc1Ld0Aw")
    adjective, animal = name.split(" ")
    assert adjective in ADJECTIVES and animal in ANIMALS
    assert friendly_name("NO7z2-k3Jq9vXbWc1Ld0Aw") == name  # stable
    # Spread over the 4,096 names: a thousand visitors rarely share one.
    names = {friendly_name(f"visitor-{n}") for n in range(1000)}
    assert len(names) > 850


def test_the_label_is_the_name_then_the_email_then_the_friendly_name():
    visitor = Visitor(public_id="abc123-defGHI456jkl789")
    assert visitor.label == friendly_name("abc123-defGHI456jkl789")
    assert "Visitor" not in visitor.label and "-" not in visitor.label
    visitor.email = "ann@example.com"
    assert visitor.label == "ann@example.com"
    visitor.name = "Ann"
    assert visitor.label == "Ann"


def conversation_id(html: str) -> int:
    return int(re.search(r"/dashboard/conversations/(\d+)", html).group(1))


def test_every_screen_shows_the_same_friendly_name(app, auth, site, online, visitor):
    assert visitor.send("Where is my parcel?").status_code == 200
    public_id = visitor.record().public_id
    name = friendly_name(public_id)
    old_label = f"Visitor {public_id[:6]}"  # what the screens said before

    inbox = text(auth.get("/dashboard/inbox"))
    assert name in inbox
    assert old_label not in inbox
    page = text(auth.get(f"/dashboard/conversations/{conversation_id(inbox)}"))
    assert name in page
    assert old_label not in page

    # Another visitor of the same site is called something else.
    other = WidgetVisitor.arrive(app, site.site_key)
    other.send("Me too")
    assert friendly_name(other.record().public_id) in text(auth.get("/dashboard/inbox"))


def test_the_away_notice_calls_the_visitor_by_the_friendly_name(site, visitor, smtp):
    assert visitor.send("Anyone there?").status_code == 200
    name = friendly_name(visitor.record().public_id)
    assert f"{name}: Anyone there?" in text_of(smtp.wait_for("owner@example.com",
                                                              "New chat message on Shop"))

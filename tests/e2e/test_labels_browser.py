"""Labels in Chromium: an owner makes them on the Labels page, an agent puts one on a
conversation, and a teammate's page (another member, another browser) shows it at once, in
the conversation and in the list, coloured for reading; the inbox filtered by a label keeps
itself up to date as labels come and go, and a label renamed, recoloured or deleted changes
on the teammate's page at once. axe checks each screen."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import HttpUser, confirmed_user_over_http, link_in, log_in
from tests.e2e.inbox_browser import (  # noqa: F401  (fixtures, used by name)
    DESKTOP,
    agent_page_fixture,
    guests_fixture,
    make_shop,
    open_inbox,
    open_row,
    row,
)


@pytest.fixture(scope="module")
def shop(browser, live_server):
    return make_shop(browser, live_server, "labels")


@pytest.fixture(scope="module")
def mate(shop, live_server):
    """A second member of the shop's workspace (an agent), invited and joined over HTTP."""
    email = confirmed_user_over_http(live_server, "mate", name="Mia Mate")
    with HttpUser(live_server.url) as owner:
        owner.log_in(shop.owner)
        owner.post_form("/dashboard/team", "/dashboard/team/invitations", email=email, role="agent")
        assert owner.last.status_code == 200, owner.last.text[:2000]
    return email, link_in(live_server.wait_for_mail(email, "invited you"))


def mates_page(new_context, mate):
    email, invitation = mate
    page = new_context(viewport=DESKTOP).new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    log_in(page, email)
    page.goto(invitation)
    page.get_by_role("button", name="Accept invitation").click()
    page.wait_for_url(re.compile(r"/dashboard/inbox"))
    return page


def expect_colours(locator, background: str, ink: str) -> None:
    """A chip's colours: the page's script paints them from its data attributes once the chip
    is in the page, so they are waited for (read at once, a run saw the default colours)."""
    expect(locator).to_have_css("background-color", background)
    expect(locator).to_have_css("color", ink)


def test_a_label_put_on_in_one_page_shows_live_in_a_teammates(agent_page, guests, shop, mate,
                                                               new_context):
    owner = agent_page(shop, DESKTOP)
    owner.goto("/dashboard/labels")
    assert_accessible(owner)
    for name, colour in [("VIP", "#ffd700"), ("Refund", "#1d4ed8")]:
        owner.get_by_label("Name", exact=True).fill(name)
        owner.get_by_label("Colour", exact=True).fill(colour)
        owner.get_by_role("button", name="Create label").click()
        expect(owner.locator("#labels-page [role=status]")).to_contain_text(f"Label “{name}” created.")
    vip = owner.locator("#labels-page .label-chip", has_text="VIP")
    expect(vip).to_have_count(1)
    expect_colours(vip, "rgb(255, 215, 0)", "rgb(0, 0, 0)")  # black on gold
    expect_colours(owner.locator("#labels-page .label-chip", has_text="Refund"),
                   "rgb(29, 78, 216)", "rgb(255, 255, 255)")  # white on blue
    assert_accessible(owner)

    dana, eli = guests(shop, "dana"), guests(shop, "eli")
    dana.say("My parcel arrived broken.")
    eli.say("Do you gift wrap?")

    teammate = mates_page(new_context, mate)
    open_inbox(teammate)
    dana_conv = open_row(teammate, "arrived broken")
    labels_card = teammate.locator(f"#conv-labels-{dana_conv}")
    expect(labels_card).to_contain_text("No labels on this conversation.")

    open_inbox(owner)
    open_row(owner, "arrived broken")
    owner.get_by_label("Add a label").select_option(label="VIP")
    owner.get_by_role("button", name="Add", exact=True).click()
    expect(owner.locator(f"#conv-labels-{dana_conv} .label-chip")).to_have_text(["VIP"])

    # The teammate's page, untouched: the conversation and its row in the list say so.
    chip = labels_card.locator(".label-chip")
    expect(chip).to_have_text(["VIP"])
    expect_colours(chip, "rgb(255, 215, 0)", "rgb(0, 0, 0)")
    expect(row(teammate, "arrived broken").locator(".label-chip")).to_have_text(["VIP"])
    assert_accessible(teammate)

    # The inbox filtered by VIP: Dana only; Eli joins it live when he gets the label, Dana
    # leaves it when hers is taken off.
    teammate.get_by_label("Label", exact=True).select_option(label="VIP")
    teammate.get_by_role("button", name="Show").click()
    expect(teammate).to_have_url(re.compile(r"label=\d+"))
    conversations = teammate.get_by_role("list", name="Conversations")
    expect(conversations.locator("> li")).to_have_count(1)
    expect(row(teammate, "arrived broken")).to_have_count(1)
    assert_accessible(teammate)

    open_inbox(owner)
    open_row(owner, "gift wrap")
    owner.get_by_label("Add a label").select_option(label="VIP")
    owner.get_by_role("button", name="Add", exact=True).click()
    expect(row(teammate, "gift wrap")).to_have_count(1)
    expect(conversations.locator("> li")).to_have_count(2)

    open_row(owner, "arrived broken")
    owner.get_by_role("button", name="Remove label VIP").click()
    expect(owner.locator(f"#conv-labels-{dana_conv}")).to_contain_text("No labels on this conversation.")
    expect(row(teammate, "arrived broken")).to_have_count(0)
    expect(conversations.locator("> li")).to_have_count(1)
    expect(labels_card).to_contain_text("No labels on this conversation.")  # still open beside it

    # A reload shows the same list.
    teammate.reload()
    expect(teammate.get_by_role("list", name="Conversations").locator("> li")).to_have_count(1)
    expect(row(teammate, "gift wrap")).to_have_count(1)

    # Renamed and recoloured on the Labels page: the teammate's chips change at once, and so
    # does the filter's choice; deleted, its chips go from the teammate's page too.
    owner.goto("/dashboard/labels")
    owner.get_by_label("Name of VIP").fill("Gold")
    owner.get_by_label("Colour of VIP").fill("#1d4ed8")
    owner.get_by_role("button", name="Save VIP").click()
    expect(owner.locator("#labels-page .label-chip", has_text="Gold")).to_have_count(1)
    gift = row(teammate, "gift wrap").locator(".label-chip")
    expect(gift).to_have_text(["Gold"])
    expect_colours(gift, "rgb(29, 78, 216)", "rgb(255, 255, 255)")  # white on blue
    expect(teammate.get_by_label("Label", exact=True).locator("option:checked")).to_have_text("Gold")
    assert_accessible(teammate)
    owner.once("dialog", lambda dialog: dialog.accept())
    owner.get_by_role("button", name="Delete Gold").click()
    expect(owner.locator("#labels-page .label-chip", has_text="Gold")).to_have_count(0)
    expect(row(teammate, "gift wrap").locator(".label-chip")).to_have_count(0)
    expect(teammate.get_by_label("Label", exact=True).locator("option", has_text="Gold")).to_have_count(0)
    assert owner.errors == [] and teammate.errors == [], (owner.errors, teammate.errors)

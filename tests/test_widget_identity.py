"""Identity verification for signed-in visitors: a page that names its user with an HMAC of
the id made with the site's secret gets that user's own visitor, in every browser, with their
conversation; the team sees them verified. A forged, missing or stale signature (an old
secret, another site's) is ignored, the visitor stays anonymous, and the site's page counts
it. The secret is shown once, when made, and never again: not on the site's page, not in an
export."""

import hashlib
import hmac
import re

import pytest

from app.db import connection
from app.widget.identity import SiteIdentity, VerifiedVisitor
from app.widget.models import Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    AGENT_EMAIL,
    TOKEN_HEADER,
    WidgetVisitor,
    agent_fixture,
    chat_state,
    conversation_fixture,
    count,
    get,
    make_site,
    online_fixture,
    rival_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.test_export import ask, download, every_byte, newest_link

SECRET_FIELD = re.compile(r'id="identity-secret"[^>]*value="([^"]+)"')


def make_secret(client, site) -> str:
    """The owner makes (or replaces) the site's secret: the one answer that shows it."""
    answer = client.post_form(f"/dashboard/sites/{site.id}/identity", htmx=True)
    assert answer.status_code == 200, text(answer)
    return SECRET_FIELD.search(text(answer)).group(1)


def signed(secret: str, user_id: str, **details) -> dict:
    """What a customer's server puts on the page: the id's HMAC-SHA256 in hex, keyed with the
    secret (made here as the README shows, not with Lumnar's own code)."""
    digest = hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return {"user_id": user_id, "user_hash": digest,
            **{f"user_{k}": v for k, v in details.items()}}


def arrive(app, site, fields: dict, token: str | None = None) -> tuple[dict, WidgetVisitor]:
    """A browser's chat frame starting: its answer, and the widget it then is."""
    headers = {TOKEN_HEADER: token} if token else {}
    answer = app.test_client().post(f"/widget/{site.site_key}/visitors", data=fields,
                                    headers=headers)
    assert answer.status_code == 200, text(answer)
    found = answer.get_json()
    return found, WidgetVisitor(app, site.site_key, found["token"])


def identity_row(site) -> SiteIdentity:
    return get(SiteIdentity, SiteIdentity.site == site.id)


def site_page(client, site) -> str:
    return text(client.get(f"/dashboard/sites/{site.id}"))


# --- one user, one visitor, every browser ------------------------------------------------------


def test_a_verified_user_is_one_visitor_in_every_browser_with_their_conversation(
        app, auth, site, online):
    """The laptop's conversation is there on the phone: both browsers are the same visitor,
    made once, named and addressed as the site said, and the team sees them verified."""
    secret = make_secret(auth, site)
    claim = signed(secret, "user-4711", name="Ann Example", email="Ann@Example.com")
    laptop_answer, laptop = arrive(app, site, claim)
    assert laptop_answer["verified"] is True
    assert laptop.send("Where is order 5512?").status_code == 200

    phone_answer, phone = arrive(app, site, claim)
    assert phone_answer["verified"] is True
    assert phone.record().id == laptop.record().id
    assert "Where is order 5512?" in text(phone.chat())
    assert count(Visitor) == 1 and count(VerifiedVisitor) == 1
    visitor = phone.record()
    assert (visitor.name, visitor.email) == ("Ann Example", "ann@example.com")

    page = text(auth.get(f"/dashboard/conversations/{laptop.conversation().id}"))
    assert "<strong class=\"ok\">Verified</strong>: signed in on your site as <code>user-4711</code>" in page
    assert identity_row(site).verified == 2 and identity_row(site).failures == 0
    assert "2 verified, 0 refused (0% of checks)" in site_page(auth, site)


def test_a_chat_started_before_signing_in_goes_on_as_the_signed_in_users_on_every_device(
        app, auth, site, online):
    """Chatting anonymously, then signing in on the customer's site: the same window keeps its
    chat, now the user's, which their phone shows too; the team sees it verified. A browser
    already verified as someone else keeps its own (signing in as another user moves nothing)."""
    secret = make_secret(auth, site)
    _, anonymous = arrive(app, site, {})
    assert anonymous.send("Before signing in: is order 77 shipped?").status_code == 200
    conversation_id = anonymous.conversation().id

    claim = signed(secret, "user-77", name="Bo Buyer", email="bo@example.com")
    answer, signed_in = arrive(app, site, claim, token=anonymous.token)
    assert answer["verified"] is True
    assert signed_in.record().id != anonymous.record().id
    assert signed_in.conversation().id == conversation_id
    assert "is order 77 shipped?" in text(signed_in.chat())
    assert anonymous.conversation() is None  # the old token's visitor holds nothing now

    _, phone = arrive(app, site, claim)
    assert phone.conversation().id == conversation_id
    assert "is order 77 shipped?" in text(phone.chat())
    page = text(auth.get(f"/dashboard/conversations/{conversation_id}"))
    assert "signed in on your site as <code>user-77</code>" in page

    other = signed(secret, "user-88", name="Cy Other")
    _, cy = arrive(app, site, other, token=signed_in.token)
    assert cy.conversation() is None
    assert signed_in.conversation().id == conversation_id


def test_a_page_that_names_no_user_still_gets_a_new_anonymous_visitor_each_time(app, site):
    first, _ = arrive(app, site, {})
    second, _ = arrive(app, site, {})
    assert first["verified"] is False and first["token"] != second["token"]
    assert count(Visitor) == 2 and count(VerifiedVisitor) == 0
    assert count(SiteIdentity) == 0  # nothing claimed, nothing counted


# --- refused claims ------------------------------------------------------------------------------


def test_a_forged_signature_stays_anonymous_never_reaches_the_users_visitor_and_is_counted(
        app, auth, site, online):
    secret = make_secret(auth, site)
    _, ann = arrive(app, site, signed(secret, "user-4711"))
    assert ann.send("My private address is 1 Long Lane").status_code == 200

    forged = {**signed("not the secret", "user-4711"), "user_name": "Mallory"}
    answer, mallory = arrive(app, site, forged)
    assert answer["verified"] is False
    assert mallory.record().id != ann.record().id
    assert "1 Long Lane" not in text(mallory.chat())
    # No hash at all, and a hash of another id: refused too.
    missing = arrive(app, site, {"user_id": "user-4711"})[0]
    swapped = arrive(app, site, {**signed(secret, "user-1"), "user_id": "user-4711"})[0]
    assert missing["verified"] is False and swapped["verified"] is False
    assert count(VerifiedVisitor) == 1
    row = identity_row(site)
    assert (row.verified, row.failures) == (1, 3) and row.last_failure_at is not None
    assert "1 verified, 3 refused (75% of checks); last refused" in site_page(auth, site)


def test_a_refused_claim_keeps_the_browsers_anonymous_visitor_but_never_a_verified_one(
        app, auth, site, online):
    """A broken signature on the site's side does not cost an anonymous visitor their chat;
    and a verified visitor's token sent with a broken claim does not keep them verified."""
    secret = make_secret(auth, site)
    anonymous = WidgetVisitor.arrive(app, site.site_key)
    assert anonymous.send("Anonymous question").status_code == 200
    answer, again = arrive(app, site, signed("stale", "user-9"), token=anonymous.token)
    assert answer["verified"] is False and again.record().id == anonymous.record().id

    _, ann = arrive(app, site, signed(secret, "user-4711"))
    answer, other = arrive(app, site, signed("stale", "user-4711"), token=ann.token)
    assert answer["verified"] is False and other.record().id != ann.record().id


def test_a_signature_made_with_the_old_secret_is_refused_once_it_is_replaced(
        app, auth, site, online):
    old = make_secret(auth, site)
    assert arrive(app, site, signed(old, "user-4711"))[0]["verified"] is True
    new = make_secret(auth, site)
    assert new != old
    assert arrive(app, site, signed(old, "user-4711"))[0]["verified"] is False
    answer, _ = arrive(app, site, signed(new, "user-4711"))
    assert answer["verified"] is True
    row = identity_row(site)
    assert row.rotated_at is not None and (row.verified, row.failures) == (1, 1)  # counted anew
    assert "last replaced" in site_page(auth, site)


def test_another_sites_secret_is_refused(app, auth, ws, site, online):
    other = make_site(app, ws, name="Second shop", origins="https://second.example.com")
    make_secret(auth, site)
    others_secret = make_secret(auth, other)
    assert arrive(app, site, signed(others_secret, "user-4711"))[0]["verified"] is False
    assert arrive(app, other, signed(others_secret, "user-4711"))[0]["verified"] is True
    assert (identity_row(site).failures, identity_row(other).failures) == (1, 0)


def test_a_site_without_a_secret_counts_its_claims_and_says_what_to_do(app, auth, site):
    assert arrive(app, site, signed("guess", "user-4711"))[0]["verified"] is False
    page = site_page(auth, site)
    assert "This site has no secret yet" in page
    assert "Your pages name signed-in users, but this site has no secret yet" in page
    assert count(VerifiedVisitor) == 0


@pytest.mark.parametrize("user_id", ["", "x" * 201, "user\n4711", "user\x004711"])
def test_an_id_that_cannot_be_kept_as_signed_is_refused_without_harm(app, auth, site, user_id):
    secret = make_secret(auth, site)
    answer, visitor = arrive(app, site, {**signed(secret, user_id), "user_id": user_id})
    assert answer["verified"] is False and visitor.chat().status_code == 200
    assert count(VerifiedVisitor) == 0 and identity_row(site).failures == 1


def test_hostile_hashes_and_addresses_are_refused_or_dropped_never_a_500(app, auth, site):
    secret = make_secret(auth, site)
    for hash_ in ("é" * 64, "0" * 5000, "<script>", ""):
        answer, _ = arrive(app, site, {"user_id": "user-1", "user_hash": hash_})
        assert answer["verified"] is False
    answer, visitor = arrive(app, site, signed(secret, "user-1", email="not an address",
                                               name="\u202eAnn\x07 " + "n" * 500))
    assert answer["verified"] is True
    record = visitor.record()
    assert record.email == "" and record.name.startswith("Ann n") and len(record.name) == 120


# --- what people see -----------------------------------------------------------------------------


def test_markup_in_the_name_stays_text_for_the_team_and_the_visitor(app, auth, site, online):
    secret = make_secret(auth, site)
    name = '<img src=x onerror="alert(1)">Ann'
    _, visitor = arrive(app, site, signed(secret, '<b id="u">7</b>', name=name))
    assert visitor.send("Hello").status_code == 200
    page = text(auth.get(f"/dashboard/conversations/{visitor.conversation().id}"))
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page
    assert '<b id="u">' not in page and "&lt;b id=&#34;u&#34;&gt;7&lt;/b&gt;" in page
    chat = text(visitor.chat())
    assert "<img src=x" not in chat and "&lt;img src=x onerror=" in chat


def test_the_secret_is_shown_once_then_never_on_the_page_nor_in_an_export(
        app, auth, user, site, smtp):
    secret = make_secret(auth, site)
    assert secret.startswith("lmid_") and len(secret) > 40
    page = site_page(auth, site)
    assert secret not in page and "This site has a secret, made" in page
    assert "Replace the secret" in page
    # Without JavaScript the post answers a page of its own, which shows it (once, again).
    plain = auth.post_form(f"/dashboard/sites/{site.id}/identity")
    assert plain.status_code == 200 and plain.headers["Cache-Control"] == "no-store"
    newer = SECRET_FIELD.search(text(plain)).group(1)
    assert newer != secret and newer not in site_page(auth, site)

    assert ask(auth).status_code == 303
    archive = download(auth, newest_link(user.email))
    assert newer.encode() not in every_byte(archive)
    assert "verified_visitors.json" in archive.namelist()


# --- who may make a secret -----------------------------------------------------------------------


def test_only_the_owner_makes_a_secret_for_their_own_site_and_only_with_the_forms_token(
        app, auth, site, agent, rival):
    before = chat_state(), count(SiteIdentity)
    answer = agent["client"].post_form(f"/dashboard/sites/{site.id}/identity", htmx=True)
    assert answer.status_code == 403
    assert "identity-secret" not in text(answer)
    # The agent sees the card, without the button.
    page = site_page(agent["client"], site)
    assert "Signed-in visitors" in page and "Make a secret" not in page
    answer = auth.post_form(f"/dashboard/sites/{rival['site'].id}/identity", htmx=True)
    assert answer.status_code == 404
    answer = auth.post(f"/dashboard/sites/{site.id}/identity")  # no CSRF token
    assert answer.status_code == 400
    assert (chat_state(), count(SiteIdentity)) == before


def test_deleting_a_verified_visitor_forgets_the_link_and_their_conversations(
        app, auth, site, online):
    secret = make_secret(auth, site)
    _, ann = arrive(app, site, signed(secret, "user-4711"))
    assert ann.send("Delete me later").status_code == 200
    conversation_id = ann.conversation().id
    answer = auth.post_form(f"/dashboard/conversations/{conversation_id}/visitor/delete")
    assert answer.status_code in (200, 303), text(answer)
    assert count(VerifiedVisitor) == 0
    answer, again = arrive(app, site, signed(secret, "user-4711"))
    assert answer["verified"] is True and "Delete me later" not in text(again.chat())
    with connection():
        assert VerifiedVisitor.get().visitor_id == again.record().id


def test_deleting_the_workspace_takes_the_secret_and_the_links_with_its_sites(
        app, auth, ws, site, online, rival):
    from app.privacy.deletion import service as deletion

    secret = make_secret(auth, site)
    _, ann = arrive(app, site, signed(secret, "user-4711"))
    assert ann.send("Hello").status_code == 200
    rivals_secret = make_secret(rival["client"], rival["site"])
    assert arrive(app, rival["site"], signed(rivals_secret, "user-1"))[0]["verified"] is True
    with app.app_context(), connection():
        deletion.delete_workspace(ws)
        assert [r.site_id for r in SiteIdentity.select()] == [rival["site"].id]
        assert [r.site_id for r in VerifiedVisitor.select()] == [rival["site"].id]

"""The demo: the demo owner's account, the demo shop's site, and the page that embeds its widget."""

from urllib.parse import urlsplit

from flask import current_app

from app.accounts import service as accounts
from app.accounts.models import Membership, User
from app.widget import service as widget_service
from app.widget.models import Site

DEMO_SITE_NAME = "Demo shop"


def create_demo() -> tuple[str, str] | None:
    """On an empty database, the demo owner (accounts) and the demo shop's site in their
    workspace: the login (email, password), or None when the database has users already."""
    created = accounts.create_demo_account()
    if created:
        membership = Membership.of(User.by_email(created[0])).first()
        site = create_demo_site(membership.workspace)
        create_example_conversation(site, membership.user)
    return created


def create_example_conversation(site: Site, agent: User):
    """One conversation in the demo inbox, so that a first look shows what a chat looks like:
    a visitor's question on the demo shop and the team's answer, written by the chat's own
    rules (events, unread count, search)."""
    from app.chat import service as chat

    base = current_app.config["BASE_URL"].rstrip("/")
    visitor, _ = widget_service.new_visitor(site, page_url=f"{base}/demo/shop")
    message = chat.post_visitor_message(
        site, visitor, "Hello! Does the ceramic mug come in blue?",
        page_url=f"{base}/demo/shop")
    chat.mark_read(message.conversation)  # the team read the question before answering
    chat.post_agent_reply(message.conversation, agent,
                          "It does: Harbour Blue, in stock and shipping tomorrow. "
                          "Anything else I can help with?")
    chat.post_visitor_message(site, visitor, "Perfect, thank you!")


def create_demo_site(workspace) -> Site:
    base = urlsplit(current_app.config["BASE_URL"])
    origins = {f"{base.scheme}://{base.netloc}"}
    # The same port on localhost too, so the demo works whichever name the browser uses.
    if base.hostname in ("127.0.0.1", "localhost"):
        port = f":{base.port}" if base.port else ""
        origins |= {f"{base.scheme}://127.0.0.1{port}", f"{base.scheme}://localhost{port}"}
    site = Site(workspace=workspace)
    return widget_service.save_site(
        site, name=DEMO_SITE_NAME, allowed_origins="\n".join(sorted(origins)),
        greeting="Hi! Ask us anything about our products.",
        away_message=Site.away_message.default, accent_color="#0f766e", retention_days=180)


def demo_site() -> Site | None:
    return Site.select().where(Site.name == DEMO_SITE_NAME).order_by(Site.id).first()

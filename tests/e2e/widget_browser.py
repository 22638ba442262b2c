"""Shared parts of the widget's browser tests about its postMessage checks and its visitor token:
a site made over HTTP, a Chromium whose third-party storage setting is chosen explicitly, a log
of every request the browser makes, and what the loader shows on the customer's page."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.e2e.conftest import ACTION_TIMEOUT_MS, HttpUser, confirmed_user_over_http, unique_email

CHAT_FRAME = "iframe[title=Chat]"
TOKEN_HEADER = "X-Lumnar-Visitor"
STORAGE_KEY = "lumnar-visitor:{key}"


@dataclass
class WidgetSite:
    owner: HttpUser  # logged in as the site's owner (the agent's side, over plain HTTP)
    key: str
    snippet: str
    lumnar: str  # Lumnar's origin

    def conversation_id(self, text: str) -> int:
        """The id of the inbox row whose preview shows `text`."""
        page = self.owner.get("/dashboard/inbox").text
        for row in page.split("<li")[1:]:
            if text in row:
                return int(re.search(r"/dashboard/conversations/(\d+)", row).group(1))
        raise AssertionError(f"no inbox row shows {text!r}")

    def reply(self, conversation_id: int, text: str) -> None:
        """The agent answers (a plain form post, as without JavaScript)."""
        url = f"/dashboard/conversations/{conversation_id}"
        self.owner.post_form(url, f"{url}/messages", body=text)
        assert self.owner.last.status_code == 200, self.owner.last.text[:2000]

    def stranger_visitor(self, text: str) -> str:
        """Another visitor's token (the one a hostile page would like to plant), with a
        conversation of its own saying `text`."""
        with httpx.Client(base_url=self.lumnar, timeout=10) as http:
            token = http.post(f"/widget/{self.key}/visitors").json()["token"]
            answer = http.post(f"/widget/{self.key}/messages", headers={TOKEN_HEADER: token},
                               data={"body": text, "email": unique_email("stranger")})
            assert answer.status_code < 400, answer.text[:2000]
        return token


def make_widget_site(live_server, origins: list[str]) -> WidgetSite:
    """A new owner and site, over HTTP (the browser tests here are about the visitor's side)."""
    owner = HttpUser(live_server.url)
    owner.log_in(confirmed_user_over_http(live_server, "widgetowner"))
    _, key = owner.create_site("Tea shop", origins)
    snippet = f'<script src="{live_server.url}/widget.js" data-site="{key}" async></script>'
    return WidgetSite(owner=owner, key=key, snippet=snippet, lumnar=live_server.url)


def chromium_with_third_party_storage(browser_type, launch_args, user_data_dir: Path, *,
                                      allowed: bool):
    """A Chromium on a profile of its own whose "third-party cookies" setting is set explicitly.

    In Chromium that setting also decides whether a cross-site frame may use localStorage:
    blocked, reading `localStorage` in the chat frame throws a SecurityError, as in Safari and
    Brave. Chromium's default changed between versions (156 blocks it in every profile, earlier
    ones allowed it), so each test says which it wants instead of inheriting the default.
    `cookie_controls_mode` is the profile preference behind the setting: 0 allows, 1 blocks.
    """
    prefs = user_data_dir / "Default" / "Preferences"
    prefs.parent.mkdir(parents=True)
    prefs.write_text(json.dumps({"profile": {"cookie_controls_mode": 0 if allowed else 1}}))
    context = browser_type.launch_persistent_context(str(user_data_dir), **launch_args)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


def frame_storage(frame) -> str:
    """"ok" if the frame may use its localStorage, else the error's name."""
    return frame.evaluate(
        "() => { try { localStorage.setItem('probe', '1'); localStorage.removeItem('probe');"
        " return 'ok'; } catch (e) { return e.name; } }")


def chat_frame(page):
    """The chat iframe as a Frame."""
    return page.locator(CHAT_FRAME).element_handle().content_frame()


def open_chat(page):
    """Click the launcher on the loaded page and wait for the chat: its FrameLocator."""
    page.get_by_role("button", name="Chat with us").click()
    chat = page.frame_locator(CHAT_FRAME)
    expect(chat.get_by_label("Message", exact=True)).to_be_visible()
    return chat


def say(chat, text: str, file=None) -> None:
    """Send a message (with an e-mail address if the form asks: the team is away) and wait
    until the visitor's own stream has shown it."""
    message = chat.get_by_label("Message", exact=True)
    expect(message).to_be_visible()
    email = chat.locator("#w-email")
    if email.count():
        email.fill(unique_email("visitor"))
    message.fill(text)
    if file is not None:
        chat.get_by_label("Attach a file").set_input_files(file)
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator("#messages > li.w-msg-visitor").filter(has_text=text)).to_have_count(1)


def shown(chat) -> list[str]:
    return [t.strip() for t in chat.locator("#messages > li .w-body").all_inner_texts()]


def host_token(page, key: str) -> str | None:
    """The visitor token the loader keeps in the customer page's own storage, if any."""
    return page.evaluate("k => localStorage.getItem(k)", STORAGE_KEY.format(key=key))

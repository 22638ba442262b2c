"""Shared parts of the widget's browser tests: a site made over HTTP (and its settings changed
the same way), a Chromium whose third-party storage setting is chosen explicitly, what the
loader shows on the customer's page, and the console guard every widget test runs under (any
console error or warning, or uncaught error, on the customer's page or in the chat frame fails
the test, unless the test expects exactly that message)."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ACTION_TIMEOUT_MS, HttpUser, confirmed_user_over_http, unique_email

CHAT_FRAME = "iframe[title=Chat]"
TOKEN_HEADER = "X-Lumnar-Visitor"
STORAGE_KEY = "lumnar-visitor:{key}"


# The "Add a site" form's fields as make_widget_site() posts them (see HttpUser.create_site).
SITE_FIELDS = {"greeting": "Hello from the test shop",
               "away_message": "We are away; leave your e-mail.", "accent_color": "#4338ca",
               "retention_days": "30", "enabled": "y"}


@dataclass
class WidgetSite:
    owner: HttpUser  # logged in as the site's owner (the agent's side, over plain HTTP)
    key: str
    snippet: str
    lumnar: str  # Lumnar's origin
    site_id: int = 0
    owner_email: str = ""
    name: str = "Tea shop"
    origins: list = field(default_factory=list)

    @property
    def page_path(self) -> str:
        return f"/dashboard/sites/{self.site_id}"

    def update(self, **fields) -> httpx.Response:
        """Save the site's settings form with these fields changed (the others as made)."""
        data = {"name": self.name, "allowed_origins": "\n".join(self.origins), **SITE_FIELDS,
                **fields}
        answer = self.owner.post_form(self.page_path, self.page_path, **data)
        assert answer.status_code == 200 and answer.url.path == self.page_path, answer.text[:2000]
        return answer

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
    email = confirmed_user_over_http(live_server, "widgetowner")
    owner.log_in(email)
    site_id, key = owner.create_site("Tea shop", origins)
    snippet = f'<script src="{live_server.url}/widget.js" data-site="{key}" async></script>'
    return WidgetSite(owner=owner, key=key, snippet=snippet, lumnar=live_server.url,
                      site_id=site_id, owner_email=email, origins=list(origins))


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


# --- the console guard ------------------------------------------------------------------------


class ConsoleGuard:
    """Every console error and warning, and every uncaught error, in the browser contexts (or
    pages) it watches: the customer's page and the chat frame alike (Chromium reports a frame's
    console, cross-site ones included, on its page). A test that expects a message says so with
    expect(); check() fails on anything else, and on an expected message seen another number of
    times than said."""

    LEVELS = ("error", "warning")

    def __init__(self):
        self.seen: list[str] = []
        self.expected: dict[str, int] = {}

    def watch(self, target):
        """A BrowserContext (every page and frame in it) or a Page; returns it."""
        target.on("console", self._console)
        if hasattr(target, "pages"):
            target.on("weberror", lambda error: self.seen.append(f"uncaught: {error.error}"))
        else:
            target.on("pageerror", lambda error: self.seen.append(f"uncaught: {error}"))
        return target

    def _console(self, message) -> None:
        if message.type in self.LEVELS:
            where = message.location.get("url") or "?"
            self.seen.append(f"{message.type}: {message.text} ({where})")

    def expect(self, text: str, times: int = 1) -> None:
        """A message containing `text` is what this test is about: it must show `times` times."""
        self.expected[text] = times

    def matching(self, text: str) -> list[str]:
        return [m for m in self.seen if text in m]

    def check(self) -> None:
        unexpected = [m for m in self.seen if not any(t in m for t in self.expected)]
        miscounted = {t: len(self.matching(t)) for t, n in self.expected.items()
                      if len(self.matching(t)) != n}
        assert not unexpected and not miscounted, (
            "the browser's console said what a widget page must not:\n"
            + "\n".join(unexpected) + "".join(
                f"\nexpected {self.expected[t]}× {t!r}, seen {n}×" for t, n in miscounted.items()))


@pytest.fixture(name="console")
def console_fixture():
    """A ConsoleGuard, checked when the test ends: watch() each context the test opens."""
    guard = ConsoleGuard()
    yield guard
    guard.check()

"""Alerts in Chromium against the live server: with the dashboard out of sight, a visitor who
starts a conversation (or writes in one assigned to the agent) brings a desktop notification
and one short tone while the stream's event is being handled; clicking the notification opens
the conversation. Nothing for the agent's own messages, a muted site or a tab in sight; the
browser's permission is asked only after a click.

How the browser is watched: an init script (the page's own scripts run after it) records what
our code asks of the browser's APIs. `Notification` becomes a recorder that passes the
permission calls on to the real one (Chromium headless shows no notification, and a test
needs to click one), OscillatorNode.start counts tones, and the page reports itself out of
sight (hidden, without focus) unless the test says otherwise: headless Chromium reports every
tab visible, even one behind another.
"""

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in
from tests.e2e.test_notes_browser import teammate
from tests.e2e.widget_browser import TOKEN_HEADER, make_widget_site

PROBE = """
(() => {
  const seen = window.__alerts = {notes: [], made: [], asked: 0, tones: 0, focused: 0,
                                  inEvent: false, inSight: false};
  Object.defineProperty(Document.prototype, "visibilityState",
                        {configurable: true, get: () => seen.inSight ? "visible" : "hidden"});
  Object.defineProperty(Document.prototype, "hidden",
                        {configurable: true, get: () => !seen.inSight});
  Document.prototype.hasFocus = function () { return seen.inSight; };
  const focus = window.focus;
  window.focus = function () { seen.focused += 1; return focus.call(window); };

  const Real = window.Notification;
  class Recorder extends EventTarget {
    constructor(title, options) {
      super();
      options = options || {};
      this.closed = false;
      seen.made.push(this);
      seen.notes.push({title: title, body: options.body, tag: options.tag,
                       at: performance.timeOrigin + performance.now(), inEvent: seen.inEvent});
    }
    close() { this.closed = true; }
    static get permission() { return Real.permission; }
    static requestPermission(callback) { seen.asked += 1; return Real.requestPermission(callback); }
  }
  window.Notification = Recorder;

  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function () { seen.tones += 1; return start.apply(this, arguments); };

  // The SSE extension handles each streamed event between these two (its swap in between).
  document.addEventListener("htmx:sseBeforeMessage", () => { seen.inEvent = true; });
  document.addEventListener("htmx:sseMessage", () => { seen.inEvent = false; });
})();
"""


@pytest.fixture(scope="module")
def site(live_server):
    made = make_widget_site(live_server, ["https://tea.example.com"])
    yield made
    made.owner.http.close()


class Visitor:
    """A visitor of the site with `key`, writing through the widget's API (as its frame does)."""

    def __init__(self, site, name: str, key: str = ""):
        self.lumnar, self.key, self.name, self.token = site.lumnar, key or site.key, name, None

    def says(self, text: str) -> float:
        """Post `text`; the moment it was sent (ms since the epoch, as the page counts)."""
        with httpx.Client(base_url=self.lumnar, timeout=10) as http:
            if self.token is None:
                self.token = http.post(f"/widget/{self.key}/visitors").json()["token"]
            sent = time.time() * 1000
            answer = http.post(f"/widget/{self.key}/messages", headers={TOKEN_HEADER: self.token},
                               data={"body": text, "name": self.name})
        assert answer.status_code == 200, answer.text[:2000]
        return sent


def dashboard(new_context, site, live_server, granted: bool = True):
    """The owner's dashboard in a browser of its own, out of sight, its stream connected."""
    context = new_context()
    context.add_init_script(PROBE)
    if granted:  # as if the owner had allowed notifications for Lumnar before
        context.grant_permissions(["notifications"], origin=live_server.url)
    page = context.new_page()
    log_in(page, site.owner_email)
    expect(page.get_by_text("Live updates: connected")).to_be_visible()
    return page


def notes(page) -> list:
    return page.evaluate("() => window.__alerts.notes")


def wait_for_notes(page, n: int) -> list:
    page.wait_for_function(f"() => window.__alerts.notes.length >= {n}")
    return notes(page)


def row_shows(page, text: str) -> None:
    """Wait until the inbox shows `text` in a row: the event has been handled."""
    expect(page.locator("#inbox-rows > li").filter(has_text=text)).to_have_count(1)


def test_permission_is_asked_only_after_a_click(new_context, site, live_server):
    page = dashboard(new_context, site, live_server, granted=False)
    # Loading pages asks nothing; the dashboard offers the button instead.
    prompt = page.get_by_role("button", name="Turn on desktop notifications")
    expect(prompt).to_be_visible()
    page.goto("/dashboard/settings")
    section = page.locator("#alerts")
    expect(section.get_by_text("This browser has not been asked yet.")).to_be_visible()
    assert page.evaluate("() => window.__alerts.asked") == 0
    assert_accessible(page)
    # The person clicks, and allows (the grant stands for their answer to the browser's prompt).
    page.context.grant_permissions(["notifications"], origin=live_server.url)
    section.get_by_role("button", name="Turn on desktop notifications").click()
    expect(section.get_by_text("This browser shows Lumnar's notifications.")).to_be_visible()
    expect(section.get_by_role("button", name="Turn on desktop notifications")).to_be_hidden()
    assert page.evaluate("() => window.__alerts.asked") == 1
    page.goto("/dashboard/inbox")
    expect(page.get_by_role("button", name="Turn on desktop notifications")).to_be_hidden()
    assert page.evaluate("() => window.__alerts.asked") == 0  # a new page: asked nothing


def test_a_new_conversation_alerts_at_once_and_its_notification_opens_it(new_context, site,
                                                                        live_server):
    page = dashboard(new_context, site, live_server)
    page.mouse.click(5, 5)  # the person has used the page: the browser lets it play sound
    words = "Do you have the green teapot in stock?"
    sent = Visitor(site, "Ann Green").says(words)
    [note] = wait_for_notes(page, 1)
    assert note["title"] == "New conversation: Ann Green" and note["body"] == words
    # Made while the stream's event was being handled, not later.
    assert note["inEvent"] is True
    print(f"notification {note['at'] - sent:.0f} ms after the visitor's post")
    page.wait_for_function("() => window.__alerts.tones === 1")
    row_shows(page, words)
    conversation_id = site.conversation_id(words)
    # Clicking the notification: the tab comes forward, with the conversation open.
    clicked = page.evaluate("""() => {
      const note = window.__alerts.made[0];
      note.dispatchEvent(new Event("click"));
      return {focused: window.__alerts.focused, closed: note.closed};
    }""")
    assert clicked == {"focused": 1, "closed": True}
    expect(page).to_have_url(re.compile(rf"/dashboard/conversations/{conversation_id}$"))
    expect(page.locator(f"#messages-{conversation_id}").get_by_text(words)).to_be_visible()


def test_no_alert_for_own_messages_a_muted_site_or_a_tab_in_sight(new_context, site,
                                                                 live_server):
    page = dashboard(new_context, site, live_server)
    me = page.locator("#alert-prefs").get_attribute("data-user")
    ann = Visitor(site, "Ann Assigned")
    ann.says("Hello, a question about mugs.")
    wait_for_notes(page, 1)
    conversation_id = site.conversation_id("Hello, a question about mugs.")
    site.owner.post_form(f"/dashboard/conversations/{conversation_id}",
                         f"/dashboard/conversations/{conversation_id}/assign", assignee=me)
    # The owner's own reply (from another device): no alert. Ann's answer, in a conversation
    # assigned to them: one.
    site.reply(conversation_id, "Happy to help: which mug?")
    row_shows(page, "Happy to help: which mug?")
    ann.says("The blue one, please.")
    second = wait_for_notes(page, 2)[1]
    assert second["title"] == "Ann Assigned wrote" and second["body"] == "The blue one, please."
    assert len(notes(page)) == 2
    # In sight: nothing.
    page.evaluate("() => { window.__alerts.inSight = true; }")
    ann.says("Is it dishwasher safe?")
    row_shows(page, "Is it dishwasher safe?")
    page.evaluate("() => { window.__alerts.inSight = false; }")
    assert len(notes(page)) == 2
    # A muted site: nothing from it, while the other site still alerts.
    outlet_id, outlet_key = site.owner.create_site("Outlet", ["https://outlet.example.com"])
    page.goto("/dashboard/settings")
    page.get_by_role("group", name="Mute these sites").get_by_label("Outlet").check()
    page.get_by_role("button", name="Save alerts").click()
    expect(page.get_by_role("status").filter(has_text="Alerts saved.")).to_be_visible()
    assert page.locator("#alert-prefs").get_attribute("data-muted") == str(outlet_id)
    page.goto("/dashboard/inbox")
    expect(page.get_by_text("Live updates: connected")).to_be_visible()
    Visitor(site, "Mo Muted", key=outlet_key).says("A question from the outlet.")
    row_shows(page, "A question from the outlet.")
    Visitor(site, "Nell New").says("And one from the tea shop.")
    # (A new page: its record starts empty.)
    assert [n["title"] for n in wait_for_notes(page, 1)] == ["New conversation: Nell New"]


def test_a_teammates_note_that_mentions_me_alerts_me(new_context, site, live_server):
    mate_email, invitation = teammate(live_server, site)
    page = new_context().new_page()
    log_in(page, mate_email)
    page.goto(invitation)
    page.get_by_role("button", name="Accept invitation").click()
    page.wait_for_url("**/dashboard/**")
    words = "Can I pay by bank transfer?"
    Visitor(site, "Bo Banks").says(words)
    conversation_id = site.conversation_id(words)
    url = f"/dashboard/conversations/{conversation_id}"
    # Mia has the conversation open, out of sight.
    page.context.add_init_script(PROBE)
    page.context.grant_permissions(["notifications"], origin=live_server.url)
    page.goto(url)
    expect(page.get_by_text("Live updates: connected")).to_be_visible()

    def note(text: str) -> None:
        site.owner.post_form(url, f"{url}/messages", body=text, kind="note")
        expect(page.locator("li.msg-note").filter(has_text=text)).to_have_count(1)

    note("Bank transfers take two days.")  # naming nobody: no alert
    assert notes(page) == []
    note("@Mia can you check the payment?")
    [mention] = wait_for_notes(page, 1)
    assert mention["title"] == "Olive Owner mentioned you"
    assert mention["body"] == "@Mia can you check the payment?"

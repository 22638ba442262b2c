"""Everything Lumnar stores on a device: ONE table (like app/config.py's ENV_VARS), from
which the /cookies page is made and against which the browser test checks every page.

Only what the product needs to work: nothing for advertising, analytics or preferences (those
are kept in the account; usage counting stores nothing on the device), so there is nothing to
ask consent for and no banner. A name may hold `<site key>`, standing for a site's key."""

import re
from dataclasses import dataclass

COOKIE, LOCAL, SESSION = "cookie", "localStorage", "sessionStorage"
LUMNAR, CUSTOMER_SITE = "Lumnar's own pages", "the customer's website"


@dataclass(frozen=True)
class DeviceItem:
    name: str
    kind: str  # cookie, localStorage or sessionStorage
    purpose: str
    lifetime: str
    set_by: str  # which code sets it
    origin: str  # on whose pages it is stored

    def matches(self, kind: str, name: str) -> bool:
        if kind != self.kind:
            return False
        pattern = re.escape(self.name).replace(re.escape("<site key>"), r"[A-Za-z0-9_-]+")
        return re.fullmatch(pattern, name) is not None


COOKIES = (
    DeviceItem(
        name="lumnar_session", kind=COOKIE,
        purpose="Keeps you logged in, and carries the security token that proves a form was "
                "sent from Lumnar's own page (protection against cross-site request forgery). "
                "Signed, readable by no script (HttpOnly), sent only to Lumnar (SameSite=Lax).",
        lifetime="Before log-in: until the browser closes. Logged in: until you log out, "
                 "after 2 hours unused, or 14 days after log-in at the latest "
                 "(LUMNAR_SESSION_IDLE_MINUTES, LUMNAR_SESSION_MAX_HOURS).",
        set_by="the server, on the first page with a form (app/accounts/sessions.py, app/csrf.py)",
        origin=LUMNAR),
    DeviceItem(
        name="lumnar-visitor:<site key>", kind=LOCAL,
        purpose="The chat visitor's token: lets a visitor of a customer's website come back to "
                "their own conversation. It identifies the conversation, not the person.",
        lifetime="Until the conversation is deleted (the widget then removes it) or the "
                 "visitor clears the site's data.",
        set_by="the chat window (static/widget/frame.js)",
        origin=LUMNAR),
    DeviceItem(
        name="lumnar-visitor:<site key>", kind=LOCAL,
        purpose="The same visitor token, kept by the chat button on the customer's page only "
                "when the browser refuses storage to the chat window (third-party storage "
                "blocked) and handed to the window when it opens.",
        lifetime="As above.",
        set_by="the chat button's script (static/widget/loader.js)",
        origin=CUSTOMER_SITE),
    DeviceItem(
        name="lumnar-probe", kind=LOCAL,
        purpose="Checks that the chat window may use storage at all.",
        lifetime="Removed the moment it is written.",
        set_by="the chat window (static/widget/frame.js)",
        origin=LUMNAR),
    DeviceItem(
        name="htmx-current-path-for-history", kind=SESSION,
        purpose="The address of the page shown in this tab, so that the browser's back button "
                "returns to the right page after a part of it was updated in place (htmx).",
        lifetime="Until the tab is closed (session storage is never shared with other tabs or "
                 "sent to any server).",
        set_by="htmx (static/vendor/htmx.min.js), on every page and in the chat window",
        origin=LUMNAR),
    DeviceItem(
        name="htmx:sessionStorageTest", kind=SESSION,
        purpose="Checks that the page may use session storage (htmx, which makes the pages "
                "update in place; its page history cache is switched off, so it keeps nothing).",
        lifetime="Removed the moment it is written.",
        set_by="htmx (static/vendor/htmx.min.js), on every page and in the chat window",
        origin=LUMNAR),
)


def listed(kind: str, name: str) -> bool:
    """Whether COOKIES lists a `kind` entry called `name`."""
    return any(item.matches(kind, name) for item in COOKIES)

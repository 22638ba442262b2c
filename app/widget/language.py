"""The widget in the visitor's language: which language a widget request gets (the browser's
Accept-Language among ours, else the site's default), the message catalogues it reads
(app/translations/<code>/LC_MESSAGES/messages.po, compiled to .mo beside them), and each
site's default language and greetings and away messages per language (tables site_language,
site_text; migration 25). Only widget requests are translated: the dashboard stays English."""

import functools
import gettext
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from flask import current_app, has_app_context, has_request_context, request
from jinja2 import pass_context
from markupsafe import Markup
from peewee import CharField, ForeignKeyField
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from app.db import BaseModel, database
from app.shortcache import cache_for
from app.widget.models import DEFAULT_LAUNCHER_LABEL, Site
from app.widget.service import site_by_key

# The languages the widget speaks, each named in itself (as a visitor would look for it).
LANGUAGES = {"en": "English", "fr": "Français", "de": "Deutsch", "es": "Español",
             "it": "Italiano", "ro": "Română"}
DEFAULT = "en"
CATALOGUES = Path(__file__).resolve().parents[1] / "translations"
SITE_PATH = re.compile(r"/widget/(site_[A-Za-z0-9_-]{1,60})(?:/|$)")


class SiteLanguage(BaseModel):
    """A site's default language: the widget's when the browser asks for none of ours (no
    row: English)."""

    site = ForeignKeyField(Site, unique=True, on_delete="CASCADE", backref="language_rows")
    default_language = CharField(max_length=8, default=DEFAULT)

    class Meta:
        table_name = "site_language"


class SiteText(BaseModel):
    """A site's greeting and away message in one language; empty: the site's own text."""

    site = ForeignKeyField(Site, on_delete="CASCADE", backref="text_rows")
    language = CharField(max_length=8)
    greeting = CharField(max_length=300, default="")
    away_message = CharField(max_length=300, default="")

    class Meta:
        table_name = "site_text"
        indexes = ((("site", "language"), True),)


LANGUAGE_MODELS = [SiteLanguage, SiteText]


# --- which language --------------------------------------------------------------------------


def default_language(site) -> str:
    """The site's default language. Asked for every visitor message whose browser names none
    of ours (the chat's writer renders the next form in it): kept a few seconds per process
    (app/shortcache.py), dropped at once when the site page changes it."""
    if site is None or site.id is None:
        return DEFAULT

    def ask() -> str:
        row = SiteLanguage.get_or_none(SiteLanguage.site == site.id)
        return row.default_language if row and row.default_language in LANGUAGES else DEFAULT

    if not has_app_context():
        return ask()
    return cache_for(current_app, "site_languages").get(site.id, ask, lambda _code: site.id)


def chosen(accept_language, site) -> str:
    """The visitor's language: the first of the browser's that we speak (fr-CA counts as fr),
    else the site's default. `accept_language`: werkzeug's parsed header."""
    return accept_language.best_match(LANGUAGES, default=None) or default_language(site)


def known(code) -> str:
    """`code` when it is one of the widget's languages, else the default (a stream ticket's
    word for it, signed by us but perhaps from before a language was dropped)."""
    return code if code in LANGUAGES else DEFAULT


def from_header(value, site) -> str:
    """The same choice from a raw Accept-Language header (the chat's own ASGI routes)."""
    return chosen(parse_accept_header(value or "", LanguageAccept), site)


def site_of_request():
    """The site a widget URL names (from the short cache the widget's views read too). Not
    from flask.g: the chat's own message route renders inside an application context that
    outlives its requests."""
    match = SITE_PATH.match(request.path)
    return site_by_key(match.group(1)) if match else None


def current() -> str:
    """The language being rendered: one forced by `speaking` (the chat's writer, which renders
    outside requests), else the widget request's own (chosen once, kept on the request), else
    English (the dashboard)."""
    forced = _speaking.get()
    if forced:
        return forced
    if not has_request_context() or not request.path.startswith("/widget/"):
        return DEFAULT
    code = getattr(request, "widget_language", None)
    if code is None:
        code = request.widget_language = chosen(request.accept_languages, site_of_request())
    return code


# Kept in a context variable, not in flask.g: the chat's writer serves many visitors' requests
# inside one application context.
_speaking: ContextVar[str | None] = ContextVar("widget_language", default=None)


@contextmanager
def speaking(code: str):
    token = _speaking.set(code if code in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        _speaking.reset(token)


@functools.cache
def catalogue(code: str) -> gettext.NullTranslations:
    # English is the messages' own language; a missing catalogue is English too.
    return gettext.translation("messages", CATALOGUES, [code], fallback=True)


def translate(message: str, **values) -> str:
    """`message` in the current language; `values` fill its %(name)s places."""
    said = catalogue(current()).gettext(message)
    return said % values if values else said


def said(error, code: str) -> str:
    """A rule's refusal (app.errors.RuleError) in language `code`, its values filled in."""
    with speaking(code):
        return translate(error.msgid, **error.values)


@pass_context
def translate_filter(context, message, **values):
    """`message` translated for a template. Our own words (those the catalogues hold: no
    markup, checked by the tests) come out as written, apostrophes and all, with `values`
    escaped into them; anything else is plain text, escaped as always. Taking the context
    keeps Jinja from folding "Send"|t into the compiled template in whichever language
    rendered it first."""
    if message not in known_messages():
        return translate(message, **values)
    said = Markup(catalogue(current()).gettext(message))
    return said % values if values else said


@functools.cache
def known_messages() -> frozenset:
    return frozenset(key for key in catalogue("fr")._catalog if isinstance(key, str) and key)


def init_app(app) -> None:
    # A filter rather than the i18n tags: the chat's event renderer (app/chat/render.py) has
    # an environment of its own that copies the app's filters, not its extensions.
    app.add_template_filter(translate_filter, "t")
    app.add_template_global(current, "widget_language")
    app.add_template_global(site_words, "site_words")
    app.add_template_global(script_words, "widget_script_words")


# The words static/widget/frame.js and its clock write themselves, in the page's language.
def script_words() -> dict:
    return {"today": translate("today"), "tomorrow": translate("tomorrow"),
            "your_time": translate("(your time)"), "sent": translate("sent %(files)s"),
            "cannot_start": translate("The chat cannot start right now. Please try again later."),
            # The stream's fragments are rendered once for every visitor, in English: the
            # frame puts its own words in (static/widget/frame.js, streamedWords).
            "you": translate("You"), "seen": translate("Seen"),
            "typing": translate("The team is typing…"),
            "deleted_by_you": translate("Your conversation was deleted: its messages and files are gone."),
            "deleted_by_team": translate("The team deleted this conversation."),
            "start_new": translate("Start a new conversation"),
            "rating_question": translate("How was this conversation?"),
            "rating_comment": translate("Anything to add? (optional)"),
            "rating_send": translate("Send my rating"), "good": translate("Good"),
            "okay": translate("Okay"), "bad": translate("Bad")}


def site_words(site) -> dict:
    greeting, away = text_for(site, current())
    return {"greeting": greeting, "away_message": away}


# --- what a site says in a language --------------------------------------------------------


def text_for(site, language: str) -> tuple[str, str]:
    """(greeting, away message) for a visitor in `language`: the site's own words in that
    language, else its default text (the model's default greeting translated)."""
    row = (SiteText.get_or_none((SiteText.site == site.id) & (SiteText.language == language))
           if site.id else None)
    default_greeting = Site.greeting.default
    greeting = site.greeting if site.greeting != default_greeting else translate(default_greeting)
    away = (site.away_message if site.away_message != Site.away_message.default
            else translate(Site.away_message.default))
    if row is None:
        return greeting, away
    return row.greeting or greeting, row.away_message or away


def launcher_words(site, accept_language) -> dict:
    """The loader's words for a page (its status answer): the button's label, the default
    one in the visitor's language. (The frame's title, "Chat", is the same word in each.)"""
    if site.launcher_label != DEFAULT_LAUNCHER_LABEL:
        return {"label": site.launcher_label}
    with speaking(chosen(accept_language, site)):
        return {"label": translate(DEFAULT_LAUNCHER_LABEL)}


def settings_of(site) -> dict:
    """The site page's card: the default language and each language's texts."""
    rows = {row.language: row for row in SiteText.select().where(SiteText.site == site.id)}
    return {"default": default_language(site),
            "texts": {code: (rows[code].greeting, rows[code].away_message) if code in rows
                      else ("", "") for code in LANGUAGES}}


def save(site, default: str, texts: dict) -> None:
    """`texts`: {code: (greeting, away message)} for codes of LANGUAGES (checked by the form);
    both empty: the row goes."""
    with database.atomic():
        (SiteLanguage.insert(site=site.id, default_language=default)
         .on_conflict(conflict_target=[SiteLanguage.site],
                      update={SiteLanguage.default_language: default}).execute())
        SiteText.delete().where(SiteText.site == site.id).execute()
        rows = [{"site": site.id, "language": code, "greeting": greeting, "away_message": away}
                for code, (greeting, away) in texts.items() if greeting or away]
        if rows:
            SiteText.insert_many(rows).execute()
    cache_for(current_app, "site_languages").drop(site.id)

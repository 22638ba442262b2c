"""The widget in the visitor's language: the browser's Accept-Language picks one of ours (a
regional variant counts), else the site's default; greetings and away messages can be set per
language on the site's page; the dashboard stays English. The catalogues translate every
word the widget shows, and the compiled .mo files are the .po files as they are now."""

import io
import re
from html import unescape
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from app.db import connection
from app.widget import language
from app.widget.language import SiteLanguage, SiteText
from app.widget.models import Site
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    asgi_request,
    online_fixture,
    rival_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import db_state

ROOT = Path(__file__).resolve().parents[1]
CATALOGUES = ROOT / "app" / "translations"
TRANSLATED = [code for code in language.LANGUAGES if code != "en"]


def chat_in(visitor, accept_language=None):
    headers = dict(visitor.headers)
    if accept_language:
        headers["Accept-Language"] = accept_language
    response = visitor.http.get(visitor.url("chat"), headers=headers)
    assert response.status_code == 200
    return unescape(text(response))


def languages_url(site) -> str:
    return f"/dashboard/sites/{site.id}/languages"


def save(client, site, default="en", **texts):
    data = {"default_language": default}
    for code in language.LANGUAGES:
        data[f"greeting_{code}"] = texts.get(f"greeting_{code}", "")
        data[f"away_{code}"] = texts.get(f"away_{code}", "")
    return client.post_form(languages_url(site), data, htmx=True)


# --- choosing the language --------------------------------------------------------------------


def test_a_french_browser_gets_the_chat_in_french(visitor):
    """Accept-Language fr-FR: the chat's labels, buttons and greeting are French."""
    html = chat_in(visitor, "fr-FR,fr;q=0.9,en;q=0.5")
    assert "Envoyer" in html and "Joindre un fichier" in html
    assert "Bonjour ! Comment pouvons-nous vous aider ?" in html
    assert ">Send<" not in html


def test_the_frame_page_declares_its_language_and_carries_its_scripts_words(app, visitor):
    """axe needs the page's lang to match its words; frame.js reads its own words as data."""
    response = visitor.http.get(f"/widget/{visitor.site_key}", headers={"Accept-Language": "de"})
    html = text(response)
    assert '<html lang="de">' in html
    assert "Chat schließen" in unescape(html)
    words = re.search(r'<script type="application/json" id="widget-words">(.*?)</script>', html, re.S)
    assert words and "morgen" in words.group(1)


def test_an_unknown_language_gets_the_sites_default(app, visitor, site):
    with app.app_context(), connection():
        language.save(site, "es", {})
    html = chat_in(visitor, "ja-JP,ja;q=0.9")
    assert "Enviar" in html and "¡Hola! ¿En qué podemos ayudarte?" in html


def test_no_header_and_a_german_default_gives_german(app, visitor, site):
    with app.app_context(), connection():
        language.save(site, "de", {})
    html = chat_in(visitor)
    assert "Senden" in html and "Nachricht" in html


def test_a_browser_that_asks_for_english_gets_english_whatever_the_default(app, visitor, site):
    with app.app_context(), connection():
        language.save(site, "de", {})
    html = chat_in(visitor, "en-US,en;q=0.9")
    assert ">Send<" in html and "Hi! How can we help?" in html


def test_the_fresh_message_form_after_a_message_stays_in_the_visitors_language(visitor, online):
    """The chat's own message route (ASGI) renders the next form in the visitor's language."""
    first = visitor.send("Bonjour")  # starts the conversation: the whole chat comes back
    assert first.status_code == 200
    headers = {**visitor.headers, "Accept-Language": "it-IT,it;q=0.9"}
    answer = asgi_request(visitor.app, "POST", visitor.url("messages"),
                          data={"body": "Ciao di nuovo"}, headers=headers)
    assert answer.status_code == 200
    assert "Invia" in unescape(answer.get_data(as_text=True))


@pytest.mark.parametrize("accept, data, files, expected", [
    ("fr-FR", {"body": "x" * 5001}, None,
     "Un message peut compter 5,000 caractères au plus. Celui-ci en a 5,001."),
    ("de-DE", {"body": ""}, {"file": ("notes.exe", b"MZ\x90\x00binary", "application/octet-stream")},
     "Nur Bilder (PNG, JPEG, GIF, WebP), PDF- und Textdateien können gesendet werden."),
    ("ro-RO", {"body": ""}, {"file": ("empty.txt", b"", "text/plain")}, "Fișierul este gol."),
])
def test_a_refused_message_or_file_is_explained_in_the_visitors_language(visitor, online, accept,
                                                                      data, files, expected):
    """The chat's rules say no in the widget's language, their numbers put in; nothing stored."""
    answer = asgi_request(visitor.app, "POST", visitor.url("messages"), data=data, files=files,
                          headers={**visitor.headers, "Accept-Language": accept})
    assert answer.status_code == 422
    assert expected in unescape(answer.get_data(as_text=True))
    assert visitor.conversation() is None


def test_the_launcher_label_follows_the_visitors_language(visitor, site):
    response = visitor.http.get(f"/widget/{site.site_key}/status?origin=https://shop.example.com",
                                headers={"Accept-Language": "ro-RO"})
    answer = response.get_json()
    assert answer["allowed"], answer
    assert answer["label"] == "Scrie-ne"


def test_the_dashboard_stays_english_for_a_french_browser(auth, site):
    page = text(auth.get(f"/dashboard/sites/{site.id}", headers={"Accept-Language": "fr"}))
    assert "Your snippet" in page and "Languages" in page


# --- the site page's languages ----------------------------------------------------------------


def test_a_greeting_set_for_a_language_is_shown_to_its_visitors(auth, site, visitor):
    response = save(auth, site, default="en", greeting_fr="Salut ! On vous écoute.",
                    away_fr="On revient vite.")
    assert response.status_code == 200 and "Languages saved." in text(response)
    assert "Salut ! On vous écoute." in chat_in(visitor, "fr")
    # Other languages keep the site's own text (its default greeting, translated).
    assert "Hallo! Wie können wir helfen?" in chat_in(visitor, "de")
    assert "Hi! How can we help?" in chat_in(visitor, "en")


def test_an_unknown_language_code_is_refused_and_changes_nothing(auth, site):
    save(auth, site, default="fr", greeting_fr="Salut")
    before = db_state(SiteLanguage, SiteText)
    response = save(auth, site, default="xx", greeting_fr="Autre")
    assert response.status_code == 422
    assert "Choose one of the listed languages." in unescape(text(response))
    assert db_state(SiteLanguage, SiteText) == before


def test_too_long_a_greeting_is_refused_beside_its_field(auth, site):
    response = save(auth, site, greeting_de="x" * 301)
    assert response.status_code == 422
    html = text(response)
    assert 'id="greeting_de-error"' in html and "300 characters" in html
    with connection():
        assert SiteText.select().count() == 0


def test_markup_in_a_greeting_stays_text(auth, site, visitor):
    assert save(auth, site, greeting_es='<img src=x onerror="alert(1)">').status_code == 200
    html = text(visitor.http.get(visitor.url("chat"),
                                 headers={**visitor.headers, "Accept-Language": "es"}))
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_another_workspaces_site_is_not_found(auth, rival):
    before = db_state(SiteLanguage, SiteText, Site)
    assert auth.get(languages_url(rival["site"])).status_code == 404
    assert save(auth, rival["site"], default="fr").status_code == 404
    assert db_state(SiteLanguage, SiteText, Site) == before


def test_a_post_without_the_csrf_token_is_refused(auth, site):
    response = auth.post(languages_url(site), data={"default_language": "fr"},
                         headers={"HX-Request": "true"})
    assert response.status_code == 400
    with connection():
        assert SiteLanguage.select().count() == 0


def test_the_languages_go_with_their_site(app, auth, site):
    save(auth, site, default="it", greeting_it="Ciao")
    with connection():
        Site.delete().where(Site.id == site.id).execute()
        assert SiteLanguage.select().count() == 0 and SiteText.select().count() == 0


# --- the catalogues ----------------------------------------------------------------------------

WIDGET_TEMPLATES = ROOT / "templates" / "widget"
# The widget's words that reach the filter through a variable: form labels and the errors
# its own forms and the chat's rules give a visitor.
DYNAMIC = ["Your name (optional)", "Your e-mail", "Enter your e-mail address.",
           "Enter a valid e-mail address, like name@example.com.",
           "Enter your e-mail address, so that we can answer you.",
           "Write a message or attach a file.", "Chat with us", "Hi! How can we help?",
           "Good", "Okay", "Bad", "The file is empty.", "Files can be at most 10 MB.",
           "Only images (PNG, JPEG, GIF, WebP), PDF and plain text files can be sent. "
           "This file is of another kind.",
           "Messages can be at most %(limit)s characters. This one has %(count)s.",
           "Messages can be at most 5,000 characters.",
           "Too many attempts in a short time. Wait a minute, then send your message again.",
           "Too many attempts in a short time. Wait a few minutes, then send the file again."]


def message_ids() -> set[str]:
    """Every word the widget translates: literals put through the `t` filter in the widget's
    templates, translate("…") in its Python, and the ones that arrive as values."""
    ids = set(DYNAMIC)
    for path in WIDGET_TEMPLATES.glob("*.html"):
        source = path.read_text()
        ids |= set(re.findall(r'"([^"]+)"\|t\b', source)) | set(re.findall(r"'([^']+)'\|t\b", source))
    for path in (ROOT / "app" / "widget").glob("*.py"):
        ids |= set(re.findall(r'translate\(\s*"([^"]+)"', path.read_text()))
    return ids


def catalogue(code):
    with open(CATALOGUES / code / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=code)


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_catalogue_translates_every_word_of_the_widget(code):
    wanted = message_ids()
    assert len(wanted) > 40
    found = {message.id: message.string for message in catalogue(code) if message.id}
    assert sorted(wanted - set(found)) == []
    assert [msgid for msgid, string in found.items() if not string] == []
    # A placeholder lost in translation would show the visitor nothing where a name goes.
    assert [m for m in wanted if sorted(re.findall(r"%\(\w+\)s", m))
            != sorted(re.findall(r"%\(\w+\)s", found[m]))] == []


@pytest.mark.parametrize("code", TRANSLATED)
def test_catalogue_words_hold_no_markup(code):
    """The widget's templates print our own words as written (apostrophes unescaped), so a
    word may hold nothing that is markup, nor a quote that would end an attribute."""
    assert [(m.id, m.string) for m in catalogue(code) if m.id
            and re.search(r'[<>&"]', m.id + m.string)] == []


def test_values_put_into_our_words_are_escaped(app):
    with app.test_request_context("/widget/site_x/chat", headers={"Accept-Language": "it"}):
        said = language.translate_filter(None, "Image %(name)s", name='<img src=x onerror="1">')
        assert str(said) == 'Immagine &lt;img src=x onerror=&#34;1&#34;&gt;'
        # Words that are not ours (a message from elsewhere) stay plain text to be escaped.
        assert not hasattr(language.translate_filter(None, "<b>not ours</b>"), "__html__")


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_compiled_catalogue_is_the_po_file_as_it_is_now(code):
    """The .mo the app reads is committed: it must be what `pybabel compile -d app/translations`
    makes of the .po today (run it after editing a .po)."""
    compiled = io.BytesIO()
    write_mo(compiled, catalogue(code))
    assert (CATALOGUES / code / "LC_MESSAGES" / "messages.mo").read_bytes() == compiled.getvalue()


def test_every_language_offered_has_a_catalogue():
    assert sorted(p.name for p in CATALOGUES.iterdir() if p.is_dir()) == sorted(TRANSLATED)

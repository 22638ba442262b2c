"""The site page's languages card: the widget's default language and the greeting and away
message in each language (app/widget/language.py keeps them and picks the visitor's)."""

from flask import Blueprint, url_for
from wtforms import SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, Length

from app.accounts.sessions import login_required, owner_required, scoped_or_404
from app.chat.forms import strip
from app.csrf import TokenForm
from app.rendering import render, render_form_errors
from app.widget import language
from app.widget.forms import lines
from app.widget.models import Site

bp = Blueprint("languages", __name__, url_prefix="/dashboard")


class LanguageForm(TokenForm):
    default_language = SelectField(
        "Default language (when the visitor's browser asks for none of these)",
        choices=[SelectChoice(code, name) for code, name in language.LANGUAGES.items()],
        validate_choice=False,
        validators=[AnyOf(list(language.LANGUAGES), message="Choose one of the listed languages.")])


# One greeting and one away message per language, named greeting_fr, away_fr…
for _code, _name in language.LANGUAGES.items():
    setattr(LanguageForm, f"greeting_{_code}", StringField(f"Greeting in {_name}", validators=[
        Length(max=300, message="Keep the greeting to 300 characters or fewer.")], filters=strip))
    setattr(LanguageForm, f"away_{_code}", TextAreaField(f"Away message in {_name}", validators=[
        Length(max=300, message="Keep the away message to 300 characters or fewer.")],
        filters=lines, render_kw={"rows": 2}))


def language_form(site, formdata=None) -> LanguageForm:
    stored = language.settings_of(site)
    values = {"default_language": stored["default"]}
    for code, (greeting, away) in stored["texts"].items():
        values[f"greeting_{code}"], values[f"away_{code}"] = greeting, away
    return LanguageForm(formdata=formdata, **values)


@bp.app_template_global("site_languages")
def site_languages(site, form=None) -> dict:
    return {"form": form or language_form(site), "languages": language.LANGUAGES,
            "action": url_for("languages.languages_update", site_id=site.id)}


def card(site, form=None, **context):
    return render("widget/languages.html", "widget/_language.html", site=site,
                  language_form=form, **context)


@bp.get("/sites/<int:site_id>/languages")
@login_required
def languages_show(site_id):
    return card(scoped_or_404(Site, site_id))


@bp.post("/sites/<int:site_id>/languages")
@owner_required
def languages_update(site_id):
    site = scoped_or_404(Site, site_id)
    form = LanguageForm()
    if not form.validate_on_submit():
        return render_form_errors("widget/languages.html", "widget/_language.html", form,
                                  site=site, language_form=form)
    language.save(site, form.default_language.data, {
        code: (form[f"greeting_{code}"].data or "", form[f"away_{code}"].data or "")
        for code in language.LANGUAGES})
    return card(site, saved=True)

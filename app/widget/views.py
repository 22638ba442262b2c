"""The widget's routes: the visitor-facing ones, and the owner's site settings pages. The visitor is known by a signed token kept in the iframe's
localStorage and sent as the X-Lumnar-Visitor header (never a cookie, never in a URL)."""

import functools
import hashlib
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, url_for

from app.accounts.sessions import login_required, owner_required, scoped_or_404, workspace_id
from app.chat import files, service
from app.chat.models import Message
from app.errors import RuleError
from app.extensions import csrf, limiter
from app.mail import service as mail
from app.rendering import go, render, render_form_errors
from app.widget import identity, language
from app.widget import service as widget_service
from app.widget.colours import HEX, NEEDED, contrast_with_white, shown
from app.widget.demo import demo_site
from app.widget.forms import SiteForm, WidgetEmailForm, WidgetProfileForm
from app.widget.models import Site
from app.widget.pages import chat_context, frame_csp

bp = Blueprint("widget", __name__)
# No CSRF tokens here: see WidgetMessageForm. Unsafe requests need the visitor header.
csrf.exempt(bp)
# The owner's pages for the sites the widget is installed on: dashboard pages, CSRF as usual.
sites_bp = Blueprint("sites", __name__, url_prefix="/dashboard")

STATIC = Path(__file__).resolve().parents[2] / "static"
LOADER = STATIC / "widget" / "loader.js"
# Everything the iframe page loads from us: its URLs carry a hash of all of them.
FRAME_FILES = [LOADER, STATIC / "widget" / "frame.js", STATIC / "widget" / "frame.css",
               STATIC / "js" / "live.js"]
TOKEN_HEADER = "X-Lumnar-Visitor"


@functools.cache
def loader_version() -> str:
    digest = hashlib.sha256()
    for path in FRAME_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


@bp.get("/widget.js")
def loader():
    response = Response(LOADER.read_bytes(), mimetype="text/javascript")
    # Customers embed this URL unversioned: cache an hour; the iframe page it opens is versioned.
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def identify() -> None:
    """The site the URL names and the visitor its token names (None when unknown), looked up
    once per request into g.site and g.visitor. The per-visitor rate limits below ask first
    (their key is checked before the view runs), then the view's opening reuses the answer."""
    if "site" in g:
        return
    key = (request.view_args or {}).get("site_key")
    g.site = widget_service.site_by_key(key) if key else None
    g.visitor = (widget_service.visitor_from_token(g.site, request.headers.get(TOKEN_HEADER))
                 if g.site else None)


def widget_view(*, visitor=False, conversation=False):
    """The opening every widget view under /widget/<site_key> shares. The view is called with
    `site` instead of site_key (an unknown or switched-off site answers the 'unavailable' page,
    404); with `visitor=True` also `visitor` (a token that is missing or not valid answers 401);
    with `conversation=True` also `conversation`, the visitor's current one (None before their
    first message)."""
    def decorate(view):
        @functools.wraps(view)
        def opened(site_key):
            identify()
            if g.site is None:
                response = render("widget/unavailable.html", status=404)
                # Readable inside any page's frame, so no frame-ancestors limit.
                response.headers["Content-Security-Policy"] = frame_csp(None)
                abort(response)
            found = {"site": g.site}
            if visitor or conversation:
                if g.visitor is None:
                    abort(Response("This chat session is not valid; reload the page to start "
                                   "again.", status=401, mimetype="text/plain"))
                found["visitor"] = g.visitor
            if conversation:
                found["conversation"] = service.current_conversation(g.visitor)
            return view(**found)
        return opened
    return decorate


def visitor_key() -> str:
    identify()
    return f"visitor:{g.visitor.id}" if g.visitor else f"ip:{request.remote_addr}"


@bp.get("/widget/<site_key>/status")
def status(site_key):
    """Asked by the loader before it shows anything (one per page view): may the widget load on
    the asking page's origin, and with what label and colours? Readable by any origin (CORS),
    sent without cookies; it holds nothing secret. The origin is the browser's own Origin
    header; a same-origin fetch sends none, so then the loader's `origin` parameter (the page
    is then on Lumnar's own origin, as the demo shop is)."""
    origin = request.headers.get("Origin") or request.args.get("origin", "")
    answer = widget_service.widget_status(site_key, origin)
    if answer["allowed"]:  # the button's words in the visitor's language
        answer.update(language.launcher_words(widget_service.site_by_key(site_key), request.accept_languages))
    response = jsonify(answer)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "no-store"  # each page view is counted (the site page)
    return response


@bp.get("/widget/<site_key>")
@widget_view()
def frame(site):
    response = render("widget/frame.html", site=site, v=loader_version())
    response.headers["Content-Security-Policy"] = frame_csp(site)
    return response


@bp.get("/widget/<site_key>/theme.css")
@widget_view()
def theme(site):
    css = f":root {{ --accent: {site.accent_color}; }}\n"  # validated #rrggbb on save
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=300"})


@bp.post("/widget/<site_key>/visitors")
@limiter.limit("60 per 10 minutes", key_func=lambda: f"ip:{request.remote_addr}")
@widget_view()
def visitor_create(site):
    # A page that names its signed-in user gets that user's own visitor when the signature
    # holds (app/widget/identity.py); otherwise a new anonymous one, as always.
    found = identity.visitor_for(site, request.form, g.visitor)
    if found is not None:
        return jsonify(token=widget_service.visitor_token(found[0]), verified=found[1])
    _, token = widget_service.new_visitor(site, request.form.get("page", ""))
    return jsonify(token=token, verified=False)


@bp.get("/widget/<site_key>/chat")
@widget_view(visitor=True)
def chat(site, visitor):
    return render("widget/_chat.html", **chat_context(site, visitor))


# A visitor's message is served by app/chat/wire.py at the ASGI root (one route, one set of
# rules); Flask keeps a build-only rule (never matched, no view) so that url_for builds it.
bp.add_url_rule("/widget/<site_key>/messages", "message_create", methods=["POST"],
                build_only=True)


@bp.post("/widget/<site_key>/typing")
@limiter.limit("40 per minute", key_func=visitor_key)
@widget_view(conversation=True)
def typing(site, visitor, conversation):
    if conversation is not None:
        service.typing(conversation, Message.VISITOR)
    return Response(status=204)


@bp.post("/widget/<site_key>/profile")
@limiter.limit("20 per hour", key_func=visitor_key)
@widget_view(visitor=True)
def profile_update(site, visitor):
    form = WidgetProfileForm()
    if not form.validate():
        return render_form_errors("widget/_profile.html", None, form, site=site, profile_form=form)
    service.update_visitor(visitor, form.name.data or "", form.email.data)
    return render("widget/_profile.html", saved=True, site=site, profile_form=form)


@bp.post("/widget/<site_key>/email")
@limiter.limit("20 per hour", key_func=visitor_key)
@widget_view(visitor=True)
def email_update(site, visitor):
    """The e-mail address the chat asked for while the team was away: their answers go there
    (and the conversation's page shows it to the team at once)."""
    form = WidgetEmailForm()
    if not form.validate():
        return render_form_errors("widget/_ask_email.html", None, form, site=site,
                                  email_form=form, ask_email=True)
    service.update_visitor(visitor, visitor.name, form.email.data)
    return render("widget/_ask_email.html", site=site, saved_email=form.email.data)


@bp.post("/widget/<site_key>/transcript")
@limiter.limit("5 per hour", key_func=visitor_key)
@widget_view(conversation=True)
def transcript(site, visitor, conversation):
    if conversation is None:
        abort(Response("There is no conversation to send yet.", status=409, mimetype="text/plain"))
    if not visitor.email:
        # Above the profile form, where the address is to be added.
        need_email = RuleError(language.translate("Add your e-mail first, then ask again."))
        form = WidgetProfileForm(formdata=None, name=visitor.name)
        return render_form_errors("widget/_profile.html", None, form, error=need_email, site=site,
                                  profile_form=form)
    messages = list(Message.select().where((Message.conversation == conversation)
                                           & Message.visible_to_visitor()).order_by(Message.id))
    mail.send(visitor.email, "transcript", f"Your conversation with {site.name}",
              site=site, messages=messages, conversation=conversation)
    return render("widget/_notice.html", text=language.translate(
        "We sent the conversation to %(email)s.", email=visitor.email))


@bp.post("/widget/<site_key>/delete")
@widget_view(conversation=True)
def conversation_delete(site, visitor, conversation):
    if conversation is not None:
        service.delete_conversation(conversation, Message.VISITOR)
    # chat_context reads the conversation again: after a delete it shows what is left.
    return render("widget/_chat.html", deleted=True, **chat_context(site, visitor))


@bp.get("/widget/files/<token>")
def attachment(token):
    found = widget_service.attachment_from_link(token)
    if found is None:
        abort(404)
    return files.attachment_response(found, request.args.get("inline") == "1")


@bp.get("/demo/shop")
def demo_shop():
    """A pretend customer website with the widget on it (development only, like the outbox)."""
    if not current_app.config["DEV_OUTBOX"]:
        abort(404)
    site = demo_site()
    if site is None:
        abort(404)
    return render("widget/demo_shop.html", site=site)


@bp.app_template_global("widget_file_url")
def widget_file_url(attachment_id: int, inline: bool = False) -> str:
    url = url_for("widget.attachment", token=widget_service.attachment_link_token(attachment_id))
    return url + ("?inline=1" if inline else "")


@bp.app_context_processor
def widget_globals():
    return {"lumnar_base": current_app.config["BASE_URL"]}


# --- sites' settings (the dashboard) ---------------------------------------------------------------------------------------


def sites_context(**extra):
    # A new site starts from the model defaults (greeting, away message, colour, retention).
    context = dict(sites=list(Site.for_workspace(workspace_id())), form=SiteForm(formdata=None, obj=Site()))
    context.update(extra)
    return context


@sites_bp.get("/sites")
@login_required
def sites():
    return render("widget/sites.html", **sites_context())


def _save_site(site, form, page, fragment, /, **context):
    if not form.validate_on_submit():
        return render_form_errors(page, fragment, form, form=form, **context)
    try:
        widget_service.save_site(site, name=form.name.data, allowed_origins=form.allowed_origins.data,
                          greeting=form.greeting.data, away_message=form.away_message.data,
                          accent_color=form.accent_color.data.lower(),
                          launcher_label=form.launcher_label.data,
                          retention_days=form.retention_days.data, enabled=form.enabled.data,
                          consent_required=form.consent_required.data)
    except RuleError as err:
        return render_form_errors(page, fragment, form, error=err, form=form, **context)
    return go(url_for("sites.site_show", site_id=site.id))


@sites_bp.post("/sites")
@owner_required
def site_create():
    site = Site(workspace=workspace_id())
    return _save_site(site, SiteForm(), "widget/sites.html", "widget/_site_form.html",
                      sites=list(Site.for_workspace(workspace_id())), action=url_for("sites.site_create"))


def site_context(site, **extra):
    """The site's page: its snippet, where its widget loaded and was refused, its settings."""
    loaded, refused = widget_service.origins_seen(site)
    context = dict(site=site, loaded=loaded, refused=refused,
                   refused_days=widget_service.REFUSED_KEPT.days,
                   action=url_for("sites.site_update", site_id=site.id))
    context.update(extra)
    return context


@sites_bp.get("/sites/<int:site_id>")
@login_required
def site_show(site_id):
    site = scoped_or_404(Site, site_id)
    return render("widget/site.html", **site_context(site, form=SiteForm(formdata=None, obj=site)))


@sites_bp.post("/sites/<int:site_id>")
@owner_required
def site_update(site_id):
    site = scoped_or_404(Site, site_id)
    return _save_site(site, SiteForm(), "widget/site.html", "widget/_site_form.html",
                      **site_context(site))


@sites_bp.app_template_global("accent_check")
def accent_check(colour):
    """For the site form's contrast line: (white text's contrast on `colour` as shown, whether
    it is enough), or None when it is not a colour."""
    if not HEX.fullmatch(colour or ""):
        return None
    ratio = contrast_with_white(colour)
    return shown(ratio), ratio >= NEEDED

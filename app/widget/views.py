"""Visitor-facing routes. The visitor is known by a signed token kept in the iframe's
localStorage and sent as the X-Lumnar-Visitor header (never a cookie, never in a URL)."""

import functools
import hashlib
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, url_for

from app.chat import files, service
from app.chat.forms import WidgetMessageForm, WidgetProfileForm
from app.chat.models import ChatEvent, Message
from app.extensions import csrf, limiter
from app.mail import service as mail
from app.rendering import render

bp = Blueprint("widget", __name__)
# No CSRF tokens here: see WidgetMessageForm. Unsafe requests need the visitor header.
csrf.exempt(bp)

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


def frame_csp(site) -> str:
    ancestors = " ".join(site.origins) if site else "*"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}")


@bp.before_request
def identify():
    """Site and visitor, known before any view runs, so the per-visitor rate limits below
    count per visitor (their key function reads g.visitor) and not per address."""
    key = (request.view_args or {}).get("site_key")
    g.site = service.site_by_key(key) if key else None
    g.visitor = (service.visitor_from_token(g.site, request.headers.get(TOKEN_HEADER))
                 if g.site else None)


def load_site(site_key):
    if g.get("site") is None:
        response = render("widget/unavailable.html", status=404)
        # The message must be readable inside any page's frame, so no frame-ancestors limit.
        response.headers["Content-Security-Policy"] = frame_csp(None)
        abort(response)
    return g.site


def load_visitor(site):
    if g.get("visitor") is None:
        abort(Response("This chat session is not valid; reload the page to start again.",
                       status=401, mimetype="text/plain"))
    return g.visitor


def visitor_key() -> str:
    visitor = g.get("visitor")
    if visitor is None and request.view_args and request.headers.get(TOKEN_HEADER):
        # Route limits are checked before the view has loaded the visitor: load it here.
        site = service.site_by_key(request.view_args.get("site_key", ""))
        visitor = site and service.visitor_from_token(site, request.headers.get(TOKEN_HEADER))
    return f"visitor:{visitor.id}" if visitor else f"ip:{request.remote_addr}"


@bp.get("/widget/<site_key>")
def frame(site_key):
    site = load_site(site_key)
    response = render("widget/frame.html", site=site, v=loader_version())
    response.headers["Content-Security-Policy"] = frame_csp(site)
    return response


@bp.get("/widget/<site_key>/theme.css")
def theme(site_key):
    site = load_site(site_key)
    css = f":root {{ --accent: {site.accent_color}; }}\n"  # validated #rrggbb on save
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=300"})


@bp.post("/widget/<site_key>/visitors")
@limiter.limit("60 per 10 minutes", key_func=lambda: f"ip:{request.remote_addr}")
def visitor_create(site_key):
    site = load_site(site_key)
    _, token = service.new_visitor(site, request.form.get("page", ""))
    return jsonify(token=token)


def chat_context(site, visitor, **extra):
    conv = service.current_conversation(visitor)
    messages = list(Message.select().where(Message.conversation == conv).order_by(Message.id)) if conv else []
    after = 0
    if conv is not None:
        row = (ChatEvent.select(ChatEvent.id).where(ChatEvent.conversation_id == conv.id)
               .order_by(ChatEvent.id.desc()).first())
        after = row.id if row else 0
    last_visitor = max((m.id for m in messages if m.sender == Message.VISITOR), default=0)
    context = dict(
        site=site, visitor=visitor, conversation=conv, messages=messages, after=after,
        ticket=service.stream_ticket(conv.id, visitor) if conv else None,
        away=not service.agents_online(site.workspace_id),
        seen=bool(conv and last_visitor and conv.agent_read_message_id >= last_visitor),
        form=WidgetMessageForm(formdata=None), profile_form=WidgetProfileForm(
            formdata=None, name=visitor.name, email=visitor.email),
    )
    context.update(extra)
    return context


@bp.get("/widget/<site_key>/chat")
def chat(site_key):
    site = load_site(site_key)
    visitor = load_visitor(site)
    return render("widget/_chat.html", **chat_context(site, visitor))


# A visitor's message is served by app/chat/wire.py at the ASGI root (one route, one set of
# rules); Flask keeps a build-only rule (never matched, no view) so that url_for builds it.
bp.add_url_rule("/widget/<site_key>/messages", "message_create", methods=["POST"],
                build_only=True)


def compose_context(site, visitor, form=None):
    """Just what the message form needs: sending is the hot path, so no conversation load."""
    return dict(site=site, visitor=visitor, away=not service.agents_online(site.workspace_id),
                form=form or WidgetMessageForm(formdata=None))


@bp.post("/widget/<site_key>/typing")
@limiter.limit("40 per minute", key_func=visitor_key)
def typing(site_key):
    site = load_site(site_key)
    visitor = load_visitor(site)
    conv = service.current_conversation(visitor)
    if conv is not None:
        service.typing(conv, Message.VISITOR)
    return Response(status=204)


@bp.post("/widget/<site_key>/profile")
@limiter.limit("20 per hour", key_func=visitor_key)
def profile_update(site_key):
    site = load_site(site_key)
    visitor = load_visitor(site)
    form = WidgetProfileForm()
    if not form.validate():
        return render("widget/_profile.html", status=422, site=site, profile_form=form)
    service.update_visitor(visitor, form.name.data or "", form.email.data)
    return render("widget/_profile.html", saved=True, site=site, profile_form=form)


@bp.post("/widget/<site_key>/transcript")
@limiter.limit("5 per hour", key_func=visitor_key)
def transcript(site_key):
    site = load_site(site_key)
    visitor = load_visitor(site)
    conv = service.current_conversation(visitor)
    if conv is None:
        abort(Response("There is no conversation to send yet.", status=409, mimetype="text/plain"))
    if not visitor.email:
        return render("widget/_profile.html", status=422, need_email=True, site=site,
                      profile_form=WidgetProfileForm(formdata=None, name=visitor.name))
    messages = list(Message.select().where(Message.conversation == conv).order_by(Message.id))
    mail.send(visitor.email, "transcript", f"Your conversation with {site.name}",
              site=site, messages=messages)
    return render("widget/_notice.html", text=f"We sent the conversation to {visitor.email}.")


@bp.post("/widget/<site_key>/delete")
def conversation_delete(site_key):
    site = load_site(site_key)
    visitor = load_visitor(site)
    conv = service.current_conversation(visitor)
    if conv is not None:
        service.delete_conversation(conv, Message.VISITOR)
    return render("widget/_chat.html", deleted=True, **chat_context(site, visitor))


@bp.get("/widget/files/<token>")
def attachment(token):
    found = service.attachment_from_link(token)
    if found is None:
        abort(404)
    return files.attachment_response(found, request.args.get("inline") == "1")


@bp.get("/demo/shop")
def demo_shop():
    """A pretend customer website with the widget on it (development only, like the outbox)."""
    from app.chat.demo import demo_site

    if not current_app.config["DEV_OUTBOX"]:
        abort(404)
    site = demo_site()
    if site is None:
        abort(404)
    return render("widget/demo_shop.html", site=site)


@bp.app_template_global("widget_file_url")
def widget_file_url(attachment_id: int, inline: bool = False) -> str:
    url = url_for("widget.attachment", token=service.attachment_link_token(attachment_id))
    return url + ("?inline=1" if inline else "")


@bp.app_context_processor
def widget_globals():
    return {"lumnar_base": current_app.config["BASE_URL"]}

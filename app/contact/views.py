"""The contact channel's pages: the public contact form (/contact), an owner's privacy requests
(/dashboard/requests), the staff's request queue (/staff/requests, 404 for anyone not staff,
each look at a workspace's request written to its access log), and /.well-known/security.txt."""

from flask import Blueprint, abort, g, make_response, request, url_for

from app.accounts.sessions import login_required, owner_required, workspace_id
from app.contact import service
from app.contact.forms import ContactForm, ExtendForm, PrivacyRequestForm, ReplyForm, StatusForm
from app.contact.models import ContactRequest
from app.errors import RuleError
from app.extensions import limiter
from app.rendering import go, render, render_form_errors
from app.staff.service import record, require_staff

bp = Blueprint("contact", __name__)
# The staff's queue, nested so that one check guards every one of its URLs.
staff = Blueprint("staff", __name__, url_prefix="/staff/requests")


@bp.app_template_filter("long_date")
def long_date(value) -> str:
    """A date as people write it: 28 February 2025."""
    return f"{value.day} {value:%B %Y}" if value else "—"


@bp.app_template_filter("add_months")
def add_months(value, months: int):
    return service.add_months(value, months)


# --- the public contact form ----------------------------------------------------------------


@bp.get("/contact")
def contact_form():
    return render("contact/contact.html", "contact/_contact_form.html", form=ContactForm())


@bp.post("/contact")
@limiter.limit("10 per hour")
def contact_send():
    form = ContactForm()
    if form.is_bot:
        abort(400)  # refused as the sign-up form refuses it: nothing kept, nothing sent
    if not form.validate_on_submit():
        return render_form_errors("contact/contact.html", "contact/_contact_form.html", form,
                                  form=form)
    try:
        sent = service.submit(form.name.data, form.email.data, form.topic.data,
                              form.message.data)
    except RuleError as err:
        return render_form_errors("contact/contact.html", "contact/_contact_form.html", form,
                                  error=err, form=form)
    return render("contact/sent.html", "contact/_sent.html", sent=sent)


@bp.get("/.well-known/security.txt")
def security_txt():
    response = make_response(service.security_txt())
    response.mimetype = "text/plain"  # Flask adds "; charset=utf-8"
    return response


# --- an owner's privacy requests ------------------------------------------------------------


def list_page(form=None, error=None):
    ws = workspace_id()
    requests = list(ContactRequest.of_workspace(ws).order_by(ContactRequest.received_at.desc(),
                                                             ContactRequest.id.desc()))
    context = dict(requests=requests, form=form or PrivacyRequestForm(formdata=None),
                   today=service.today())
    if form is not None:
        return render_form_errors("contact/requests.html", "contact/_request_form.html", form,
                                  error=error, **context)
    return render("contact/requests.html", **context)


@bp.get("/dashboard/requests")
@login_required
def request_list():
    return list_page()


@bp.post("/dashboard/requests")
@owner_required
@limiter.limit("20 per day")
def request_file():
    form = PrivacyRequestForm()
    if not form.validate_on_submit():
        return list_page(form)
    try:
        filed = service.file_privacy_request(g.user, workspace_id(), form.kind.data,
                                             form.details.data)
    except RuleError as err:
        return list_page(form, err)
    return go(url_for("contact.request_show", request_id=filed.id))


@bp.get("/dashboard/requests/<int:request_id>")
@login_required
def request_show(request_id):
    found = ContactRequest.get_or_none((ContactRequest.id == request_id)
                                       & (ContactRequest.workspace == workspace_id()))
    if found is None:
        abort(404)  # another workspace's request: as if it did not exist
    return render("contact/request.html", req=found, thread=service.thread(found),
                  today=service.today())


# --- the staff's queue ----------------------------------------------------------------------


# The staff area's one rule: anyone who is not staff gets 404 on every URL here.
staff.before_request(require_staff)


def request_or_404(request_id: int) -> ContactRequest:
    found = ContactRequest.get_or_none(ContactRequest.id == request_id)
    if found is None:
        abort(404)
    return found


def looked(req: ContactRequest, action: str, outcome: str = "") -> None:
    """A look at or change to a workspace's request goes to that workspace's access log."""
    if req.workspace_id is not None:
        record(req.workspace_id, f"{action} request {req.reference}{outcome}")


def staff_page(req, posted: dict | None = None, error=None):
    """The request's page; `posted` is the one form that failed, under its template name."""
    context = dict(req=req, thread=service.thread(req), today=service.today(),
                   reply_form=ReplyForm(formdata=None),
                   status_form=StatusForm(formdata=None, status=req.status),
                   extend_form=ExtendForm(formdata=None))
    if posted:
        context.update(posted)
        return render_form_errors("contact/staff_request.html", "contact/_staff_request.html",
                                  *posted.values(), error=error, **context)
    return render("contact/staff_request.html", "contact/_staff_request.html", **context)


@staff.get("/")
def queue():
    show_all = request.args.get("show") == "all"
    return render("contact/staff_queue.html", requests=service.queue(show_all),
                  show_all=show_all, today=service.today())


@staff.get("/<int:request_id>")
def staff_request(request_id):
    req = request_or_404(request_id)
    looked(req, "opened")
    return staff_page(req)


def staff_change(request_id, form_class, name, action, change):
    """One staff post: check the form, record it, apply `change`, back to the request."""
    req = request_or_404(request_id)
    form = form_class()
    if not form.validate_on_submit():
        return staff_page(req, {name: form})
    try:
        change(req, form)
    except RuleError as err:
        looked(req, action, "; refused, nothing changed")
        return staff_page(request_or_404(request_id), {name: form}, err)
    looked(req, action)
    return go(url_for("contact.staff.staff_request", request_id=req.id))


@staff.post("/<int:request_id>/reply")
def staff_reply(request_id):
    return staff_change(request_id, ReplyForm, "reply_form", "replied to",
                        lambda req, form: service.reply(req, g.user, form.body.data))


@staff.post("/<int:request_id>/status")
def staff_status(request_id):
    return staff_change(request_id, StatusForm, "status_form", "changed the status of",
                        lambda req, form: service.set_status(req, form.status.data))


@staff.post("/<int:request_id>/extend")
def staff_extend(request_id):
    return staff_change(request_id, ExtendForm, "extend_form", "extended the due date of",
                        lambda req, form: service.extend(req, g.user, form.reason.data))


bp.register_blueprint(staff)

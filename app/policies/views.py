"""Policy pages: each policy's current text, the version to come, its history and the
word-level difference between two versions (/privacy, /terms, /cookies); the service
providers (/privacy/providers); the dashboard notice's acknowledgement; and the staff's
publishing form (/staff/policies, a nested blueprint: staff only, 404 for anyone else)."""

from flask import Blueprint, abort, current_app, flash, g, request, url_for

from app.accounts.sessions import login_required
from app.db import utcnow
from app.errors import RuleError
from app.policies import cookies as device_storage
from app.policies import service
from app.policies.forms import PublishForm
from app.policies.providers import PROVIDERS
from app.policies.text import diff_counts, to_html, word_diff
from app.rendering import go, render, render_form_errors
from app.staff.service import require_staff

bp = Blueprint("policies", __name__)
staff = Blueprint("staff_policies", __name__, url_prefix="/staff/policies")


@bp.app_template_global()
def policy_notices():
    """The dashboard layout's policy notices for the person logged in (service.notices_for:
    one small indexed statement per full dashboard page; none for htmx fragments)."""
    user = g.get("user")
    return service.notices_for(user) if user is not None else []


@bp.app_template_global()
def policy_html(text: str):
    return to_html(text)


def history_or_404(kind: str) -> service.History:
    found = service.history(kind)
    if not found.versions:
        abort(404)
    return found


def policy_page(kind: str):
    return render("policies/policy.html", h=history_or_404(kind))


def version_page(kind: str, number: int):
    h = history_or_404(kind)
    version = h.number(number)
    if version is None:
        abort(404)
    return render("policies/version.html", h=h, version=version, now=utcnow())


def diff_page(kind: str):
    """?from=1&to=2: missing or not a number → 400, a number with no version → 404; the
    page says which, and lists the versions there are."""
    h = history_or_404(kind)
    raw = {"from": request.args.get("from"), "to": request.args.get("to")}
    numbers = {key: service.parse_number(value) for key, value in raw.items()}
    bad = [key for key, n in numbers.items() if n is None]
    if bad:
        problem = ("Choose two versions to compare: " + " and ".join(
            f"“{key}” is missing" if raw[key] in (None, "") else f"“{key}” is not a version number"
            for key in bad) + ".")
        return render("policies/diff.html", h=h, problem=problem, status=400, numbers=numbers)
    older, newer = h.number(numbers["from"]), h.number(numbers["to"])
    missing = [str(numbers[key]) for key, v in (("from", older), ("to", newer)) if v is None]
    if missing:
        problem = (f"There is no version {' or '.join(missing)} of the {h.title.lower()}; "
                   f"its versions are numbered 1 to {h.versions[0].version}.")
        return render("policies/diff.html", h=h, problem=problem, status=404, numbers=numbers)
    return render("policies/diff.html", h=h, older=older, newer=newer, numbers=numbers,
                  diff=word_diff(older.text, newer.text), counts=diff_counts(older.text, newer.text))


@bp.get("/privacy")
def privacy():
    return policy_page("privacy")


@bp.get("/privacy/diff")
def privacy_diff():
    return diff_page("privacy")


@bp.get("/privacy/versions/<int:number>")
def privacy_version(number):
    return version_page("privacy", number)


@bp.get("/privacy/providers")
def providers():
    return render("policies/providers.html", providers=PROVIDERS, config=current_app.config)


@bp.get("/terms")
def terms():
    return policy_page("terms")


@bp.get("/terms/diff")
def terms_diff():
    return diff_page("terms")


@bp.get("/terms/versions/<int:number>")
def terms_version(number):
    return version_page("terms", number)


@bp.get("/cookies")
def cookies():
    # The table is the page; a published cookies policy, if any, is shown with it.
    return render("policies/cookies.html", items=device_storage.COOKIES,
                  h=service.history("cookies"))


@bp.get("/cookies/diff")
def cookies_diff():
    return diff_page("cookies")


@bp.get("/cookies/versions/<int:number>")
def cookies_version(number):
    return version_page("cookies", number)


@bp.post("/dashboard/policies/acknowledge")
@login_required
def acknowledge():
    ids = [service.parse_number(v) for v in request.form.getlist("version")]
    service.acknowledge(g.user, [i for i in ids if i is not None])
    back = request.form.get("next", "")
    # Only a path on this site: never a redirect elsewhere.
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = url_for("dashboard.home")
    return go(back)


# --- staff -------------------------------------------------------------------------------------


# The staff area's one rule: anyone who is not staff gets 404 on every URL here.
staff.before_request(require_staff)


def staff_page(form: PublishForm, error: RuleError | None = None):
    context = dict(form=form, histories=[service.history(kind) for kind in service.KINDS],
                   earliest=service.earliest_material_date(utcnow()),
                   notice_days=service.NOTICE_DAYS)
    if error is not None or form.errors:
        return render_form_errors("policies/staff.html", "policies/_publish_form.html", form,
                                  error=error, **context)
    return render("policies/staff.html", "policies/_publish_form.html", **context)


@staff.get("")
def policy_list():
    kind = request.args.get("kind", "privacy")
    if kind not in service.KINDS:
        kind = "privacy"
    form = PublishForm(formdata=None, kind=kind)
    latest = service.history(kind).versions
    if latest:  # a new version starts from the latest text
        form.text.data = latest[0].text
    return staff_page(form)


@staff.post("")
def policy_publish():
    form = PublishForm()
    if not form.validate():
        return staff_page(form)
    try:
        version = service.publish(form.kind.data, form.text.data, form.summary.data,
                                  form.material.data, form.effective_on.data, g.user)
    except RuleError as err:
        return staff_page(form, err)
    flash(f"Version {version.version} of the {version.title.lower()} is published; every "
          "account holder is being e-mailed.", "success")
    return go(url_for("policies.staff_policies.policy_list", kind=version.kind))


bp.register_blueprint(staff)

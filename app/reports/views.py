"""The Reports page and its CSV downloads, for every member of the workspace."""

import csv
import io

from flask import Blueprint, make_response, request

from app.accounts.sessions import login_required, workspace_id
from app.errors import RuleError
from app.rendering import render, render_form_errors
from app.reports import charts, service

bp = Blueprint("reports", __name__, url_prefix="/dashboard")

PAGE, FRAGMENT = "reports/page.html", "reports/_report.html"


def _refused(error: RuleError):
    """A period or table no report has: the message in the page, with the choices."""
    return render_form_errors(PAGE, FRAGMENT, error=error, periods=service.PERIODS, days=None)


@bp.get("/reports")
@login_required
def reports_page():
    try:
        days = service.parse_days(request.args.get("days"))
    except RuleError as error:
        return _refused(error)
    rep = service.report(workspace_id(), days)
    return render(PAGE, FRAGMENT, report=rep, days=days, periods=service.PERIODS,
                  day_chart=charts.per_day(rep.by_day, days), site_chart=charts.hbars(rep.by_site),
                  agent_chart=charts.hbars(rep.by_agent), label_chart=charts.hbars(rep.by_label),
                  duration=service.duration)


@bp.get("/reports.csv")
@login_required
def reports_csv():
    try:
        days = service.parse_days(request.args.get("days"))
        by = service.parse_by(request.args.get("by"))
    except RuleError as error:
        return _refused(error)
    rep = service.report(workspace_id(), days)
    out = io.StringIO()
    csv.writer(out).writerows(service.csv_rows(rep, by))
    response = make_response(out.getvalue())
    response.mimetype = "text/csv"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="conversations-by-{by}-{rep.first.isoformat()}-to-'
        f'{rep.last.isoformat()}.csv"')
    return response

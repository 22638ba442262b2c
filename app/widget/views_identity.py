"""The site page's identity verification card: the owner makes or replaces the site's secret
(shown in the answer to that post, and never again), and the team's pages learn which visitors
are verified. The widget's side is the visitor-creation route (app/widget/views.py)."""

from flask import Blueprint, url_for

from app.accounts.sessions import owner_required, scoped_or_404
from app.rendering import render
from app.widget import identity
from app.widget.models import Site

bp = Blueprint("identity", __name__, url_prefix="/dashboard")


@bp.post("/sites/<int:site_id>/identity")
@owner_required
def secret_replace(site_id):
    # The post carries nothing but its CSRF token (checked for every post before the view).
    site = scoped_or_404(Site, site_id)
    secret = identity.replace_secret(site)
    # The one answer that holds the secret (signed-in pages are never cached: no-store).
    return render("widget/identity.html", "widget/_identity.html", site=site, new_secret=secret)


@bp.app_template_global("site_identity")
def site_identity(site):
    """For the card: the site's secret row (its dates and counts; the secret is never shown
    from it) or None, and where to post for a new secret."""
    return identity.identity_of(site.id), url_for("identity.secret_replace", site_id=site.id)


@bp.app_template_global("verified_as")
def verified_as(visitor_id: int) -> str | None:
    """For the visitor card: the site's own user id of a verified visitor, else None."""
    return identity.verified_as(visitor_id)

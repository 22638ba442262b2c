"""What each plan allows, checked by every area's service before it adds a site, a team
member or an active automation (app/billing/plans.py holds the numbers)."""

from flask import url_for

from app.accounts.models import Invitation, Membership, Workspace
from app.automations.models import Automation
from app.billing import plans
from app.billing.plans import FREE, PLANS, Plan
from app.db import utcnow
from app.errors import RuleError
from app.widget.models import Site


class PlanLimit(RuleError):
    """A limit of the workspace's plan refused the action; the page offers to upgrade."""

    def __init__(self, message, field=None):
        super().__init__(message, field=field, status=402)
        self.upgrade_url = url_for("billing.billing_page")


def plan_of(workspace: Workspace) -> Plan:
    """The plan whose limits apply now: the demo plan when billing is not configured."""
    if not plans.enforced():
        return plans.DEMO
    return PLANS.get(workspace.plan, FREE)


def _workspace(workspace) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace.get_by_id(workspace)


def agents_used(workspace_id: int, replacing: str = "") -> int:
    """Members and pending invitations; `replacing`: an address whose pending invitation a
    new one replaces (it does not count twice)."""
    members = Membership.select().where(Membership.workspace == workspace_id).count()
    pending = Invitation.select().where(
        (Invitation.workspace == workspace_id) & Invitation.accepted_at.is_null()
        & Invitation.revoked_at.is_null() & (Invitation.expires_at > utcnow())
        & (Invitation.email != replacing)).count()
    return members + pending


def active_automations(workspace_id: int) -> int:
    return Automation.select().where((Automation.workspace == workspace_id)
                                     & (Automation.paused == False)).count()  # noqa: E712


def usage(workspace: Workspace) -> dict:
    """What the workspace uses of each limit: {what: (used, limit or None)}."""
    plan = plan_of(workspace)
    month = utcnow().strftime("%Y-%m")
    conversations = workspace.month_conversations if workspace.usage_month == month else 0
    return {
        "sites": (Site.select().where(Site.workspace == workspace.id).count(), plan.sites),
        "agents": (agents_used(workspace.id), plan.agents),
        "conversations": (conversations, plan.conversations),
        "automations": (active_automations(workspace.id), plan.automations),
    }


def _refuse(plan: Plan, limit: int, what: str, field=None):
    if limit == 0:
        raise PlanLimit(f"The {plan.name} plan includes no {what}. Upgrade to add them.",
                        field=field)
    raise PlanLimit(f"The {plan.name} plan allows {limit} {what}; you have reached it. "
                    "Upgrade for more.", field=field)


def check_new_site(workspace) -> None:
    workspace = _workspace(workspace)
    plan = plan_of(workspace)
    if plan.sites is not None and Site.select().where(
            Site.workspace == workspace.id).count() >= plan.sites:
        _refuse(plan, plan.sites, "site" if plan.sites == 1 else "sites")


def check_new_member(workspace, field=None, replacing: str = "") -> None:
    """Members and pending invitations together count against the plan's agents."""
    workspace = _workspace(workspace)
    plan = plan_of(workspace)
    if plan.agents is not None and agents_used(workspace.id, replacing) >= plan.agents:
        _refuse(plan, plan.agents, "team members (invitations included)", field=field)


def check_activation(workspace_id: int) -> None:
    """Before an automation becomes active (created, or resumed)."""
    workspace = _workspace(workspace_id)
    plan = plan_of(workspace)
    if plan.automations is not None and active_automations(workspace_id) >= plan.automations:
        _refuse(plan, plan.automations, "active automations")

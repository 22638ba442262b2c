"""Team: invitations by e-mail, accepting them, roles, removing members, and workspace borders."""

from datetime import timedelta
from urllib.parse import urlsplit

from app.accounts import service
from app.accounts.models import Invitation, Membership, User, Workspace
from app.db import connection, utcnow
from tests.conftest import Client, db_state, log_in, make_user, old_token
from tests.mailcatcher import link_in

AGENT = "agent@example.com"


def invite(client, email=AGENT, role="agent"):
    return client.post_form("/dashboard/team/invitations", {"email": email, "role": role})


def invitation_link(client, smtp, email=AGENT) -> str:
    response = invite(client, email)
    assert response.status_code == 200, response.get_data(as_text=True)
    return urlsplit(link_in(smtp.wait_for(email, "invited you to"))).path


def client_for(app, email, name="Andy Agent") -> Client:
    make_user(app, email=email, name=name)
    client = Client(app.test_client())
    log_in(client, email)
    return client


def join(app, owner, smtp, email=AGENT, name="Andy Agent") -> Client:
    """A second user, invited by `owner` as an agent, who has accepted."""
    link = invitation_link(owner, smtp, email)
    agent = client_for(app, email, name)
    assert agent.post_form(link).status_code == 303
    return agent


def membership_id(email, workspace_name="Olive Owner's workspace") -> int:
    with connection():
        return (Membership.select(Membership.id).join(User).switch(Membership).join(Workspace)
                .where((User.email == email) & (Workspace.name == workspace_name)).get().id)


def memberships_of(email) -> list[tuple[str, str]]:
    with connection():
        user = User.by_email(email)
        return sorted((m.workspace.name, m.role) for m in Membership.of(user))


def the_invitation(email=AGENT) -> Invitation:
    with connection():
        return Invitation.select().where(Invitation.email == email).order_by(
            Invitation.id.desc()).get()


def test_owner_invites_and_invited_user_accepts_and_sees_the_workspace(app, auth, smtp):
    response = invite(auth)
    assert "Invitation sent to agent@example.com." in response.get_data(as_text=True)
    message = smtp.wait_for(AGENT, "Olive Owner invited you to Olive Owner's workspace")
    link = urlsplit(link_in(message)).path
    assert "Pending invitations" in auth.get("/dashboard/team").get_data(as_text=True)

    agent = client_for(app, AGENT)
    page = agent.get(link)
    assert page.status_code == 200
    assert "Join Olive Owner&#39;s workspace" in page.get_data(as_text=True)
    response = agent.post_form(link)
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/"

    team = agent.get("/dashboard/team").get_data(as_text=True)
    assert "Team of Olive Owner&#39;s workspace" in team
    assert "owner@example.com" in team and AGENT in team
    assert "Invite a teammate" not in team  # agents do not get the owner's tools
    assert ("Olive Owner's workspace", "agent") in memberships_of(AGENT)


def test_invitation_for_another_address_is_refused(app, auth, smtp):
    link = invitation_link(auth, smtp)
    stranger = client_for(app, "stranger@example.com", "Sly Stranger")
    before = db_state(Membership, Invitation)
    response = stranger.post_form(link)
    assert response.status_code == 403
    assert "This invitation is for agent@example.com" in response.get_data(as_text=True)
    assert db_state(Membership, Invitation) == before


def test_expired_invitation_is_refused(app, auth, smtp):
    link = invitation_link(auth, smtp)
    with connection():
        Invitation.update(expires_at=utcnow() - timedelta(minutes=1)).execute()
    agent = client_for(app, AGENT)
    before = db_state(Membership, Invitation)
    for response in (agent.get(link), agent.post_form(link)):
        assert response.status_code == 400
        assert "This invitation has expired" in response.get_data(as_text=True)
    assert db_state(Membership, Invitation) == before


def test_invitation_link_older_than_its_lifetime_is_refused(app, auth, smtp):
    invitation_link(auth, smtp)
    token = old_token(app, "invite", the_invitation().id, service.INVITE_LIFETIME + timedelta(minutes=1))
    agent = client_for(app, AGENT)
    before = db_state(Membership, Invitation)
    response = agent.post_form(f"/invitations/{token}")
    assert response.status_code == 400
    assert "This link has expired" in response.get_data(as_text=True)
    assert db_state(Membership, Invitation) == before


def test_revoked_invitation_is_refused(app, auth, smtp):
    link = invitation_link(auth, smtp)
    response = auth.post_form(f"/dashboard/team/invitations/{the_invitation().id}/revoke")
    assert response.status_code == 200
    assert "Pending invitations" not in response.get_data(as_text=True)
    agent = client_for(app, AGENT)
    before = db_state(Membership, Invitation)
    response = agent.post_form(link)
    assert response.status_code == 400
    assert "This invitation was withdrawn" in response.get_data(as_text=True)
    assert db_state(Membership, Invitation) == before


def test_a_new_invitation_replaces_the_older_link(app, auth, smtp):
    first = invitation_link(auth, smtp)
    second = invitation_link(auth, smtp)
    assert first != second
    agent = client_for(app, AGENT)
    before = db_state(Membership, Invitation)
    refused = agent.post_form(first)
    assert refused.status_code == 400
    assert "This invitation was withdrawn" in refused.get_data(as_text=True)
    assert db_state(Membership, Invitation) == before
    assert agent.post_form(second).status_code == 303


def test_invitation_link_works_once(app, auth, smtp):
    link = invitation_link(auth, smtp)
    agent = client_for(app, AGENT)
    assert agent.post_form(link).status_code == 303
    before = db_state(Membership, Invitation)
    response = agent.post_form(link)
    assert response.status_code == 400
    assert "This invitation was already accepted" in response.get_data(as_text=True)
    assert db_state(Membership, Invitation) == before


def test_agent_cannot_invite_remove_revoke_or_rename(app, auth, smtp):
    agent = join(app, auth, smtp)
    invitation_link(auth, smtp, "pending@example.com")
    pending_id = the_invitation("pending@example.com").id
    owner_membership = membership_id("owner@example.com")
    smtp.messages.clear()
    before = db_state()
    attempts = [
        agent.post_form("/dashboard/team/invitations", {"email": "x@example.com", "role": "owner"}),
        agent.post_form(f"/dashboard/team/members/{owner_membership}/remove"),
        agent.post_form(f"/dashboard/team/invitations/{pending_id}/revoke"),
        agent.post_form("/dashboard/team/name", {"name": "Taken Over"}),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert "Your account is not allowed to do that." in response.get_data(as_text=True)
    assert db_state() == before
    assert smtp.messages == []


def test_owner_cannot_remove_themselves(auth):
    before = db_state()
    response = auth.post_form(f"/dashboard/team/members/{membership_id('owner@example.com')}/remove")
    assert response.status_code == 409
    assert "You cannot remove yourself from your own workspace." in response.get_data(as_text=True)
    assert db_state() == before


def test_removing_a_member_ends_their_access_at_once(app, auth, smtp):
    agent = join(app, auth, smtp)
    assert "Team of Olive Owner&#39;s workspace" in agent.get("/dashboard/team").get_data(as_text=True)
    with connection():
        owner_workspace = Workspace.get(Workspace.name == "Olive Owner's workspace").id

    response = auth.post_form(f"/dashboard/team/members/{membership_id(AGENT)}/remove")
    assert response.status_code == 200
    assert AGENT not in response.get_data(as_text=True)

    # The agent's very next request no longer shows the owner's workspace...
    team = agent.get("/dashboard/team").get_data(as_text=True)
    assert "Olive Owner" not in team
    assert "Team of Andy Agent&#39;s workspace" in team
    # ...and switching back to it is refused.
    switch = agent.post_form("/dashboard/workspace", {"workspace_id": owner_workspace})
    assert switch.status_code == 404
    assert memberships_of(AGENT) == [("Andy Agent's workspace", "owner")]


def test_ids_from_another_workspace_are_not_found_and_nothing_changes(app, auth, smtp):
    # A second, unrelated workspace with a member and a pending invitation of its own.
    other_owner = client_for(app, "other@example.com", "Otto Other")
    invitation_link(other_owner, smtp, "theirs@example.com")
    their_invitation = the_invitation("theirs@example.com").id
    their_membership = membership_id("other@example.com", "Otto Other's workspace")
    before = db_state()

    remove = auth.post_form(f"/dashboard/team/members/{their_membership}/remove")
    assert remove.status_code == 404
    assert "No such member." in remove.get_data(as_text=True)
    revoke = auth.post_form(f"/dashboard/team/invitations/{their_invitation}/revoke")
    assert revoke.status_code == 404
    assert "There is nothing at this address." in revoke.get_data(as_text=True)
    switch = auth.post_form("/dashboard/workspace", {"workspace_id": 999})
    assert switch.status_code == 404
    assert db_state() == before


def test_inviting_an_existing_member_is_refused(app, auth, smtp):
    join(app, auth, smtp)
    smtp.messages.clear()
    before = db_state()
    for email in (AGENT, "owner@example.com"):
        response = invite(auth, email)
        assert response.status_code == 422
        assert "That person is already a member of this workspace." in response.get_data(as_text=True)
    assert db_state() == before
    assert smtp.messages == []


def test_invitation_with_an_invalid_address_or_role_is_refused(auth, smtp):
    smtp.messages.clear()
    before = db_state()
    bad_email = invite(auth, "not an address")
    assert bad_email.status_code == 422
    assert "Enter a valid e-mail address" in bad_email.get_data(as_text=True)
    bad_role = invite(auth, "someone@example.com", role="admin")
    assert bad_role.status_code == 422
    assert "Not a valid choice." in bad_role.get_data(as_text=True)
    assert db_state() == before
    assert smtp.messages == []


def test_owner_renames_the_workspace_and_empty_name_is_refused(auth):
    response = auth.post_form("/dashboard/team/name", {"name": "Corner Shop"})
    assert response.status_code == 200
    assert "Team of Corner Shop" in response.get_data(as_text=True)
    before = db_state()
    refused = auth.post_form("/dashboard/team/name", {"name": ""})
    assert refused.status_code == 422
    assert "Enter a name." in refused.get_data(as_text=True)
    assert db_state() == before

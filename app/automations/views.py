"""Dashboard: the workspace's credentials (write-only secrets, shown masked)."""

from flask import Blueprint, url_for
from wtforms.validators import ValidationError

from app.accounts.sessions import login_required, owner_required, scoped_or_404, workspace_id
from app.accounts.views import go
from app.automations import vault
from app.automations.forms import CredentialForm
from app.automations.models import Credential
from app.rendering import render

bp = Blueprint("automations", __name__, url_prefix="/dashboard")


def replace_form(cred, formdata=None):
    # Each row's form has its own field prefix, so ids stay unique on the page.
    return CredentialForm(formdata=formdata, prefix=f"c{cred.id}", obj=cred)


def credentials_page(form=None, status=200, failed_id=None):
    creds = list(Credential.select().where(Credential.workspace == workspace_id())
                 .order_by(Credential.platform, Credential.label))
    if form is not None:
        # Whatever happens, typed secrets never travel back to the browser.
        form.secret.data = form.secret2.data = form.secret_map.data = ""
    replace_forms = {c.id: (form if c.id == failed_id else replace_form(c)) for c in creds}
    create_form = form if (form is not None and failed_id is None) else CredentialForm(formdata=None)
    fragment = None if failed_id else "automations/_credential_form.html"
    return render("automations/credentials.html", fragment, status=status, credentials=creds,
                  form=create_form, replace_forms=replace_forms, kinds=Credential.KINDS,
                  action=url_for("automations.credential_create"))


@bp.get("/credentials")
@login_required
def credentials():
    return credentials_page()


@bp.post("/credentials")
@owner_required
def credential_create():
    form = CredentialForm()
    try:
        if not form.validate_on_submit():
            raise ValidationError
        secrets = form.secrets()
    except ValidationError:
        return credentials_page(form, status=422)
    vault.store(workspace_id(), form.platform.data, form.label.data, form.kind.data, secrets)
    return go(url_for("automations.credentials"))


@bp.post("/credentials/<int:credential_id>/replace")
@owner_required
def credential_replace(credential_id):
    cred = scoped_or_404(Credential, credential_id)
    form = CredentialForm(prefix=f"c{cred.id}")
    try:
        if not form.validate_on_submit():
            raise ValidationError
        secrets = form.secrets()
    except ValidationError:
        return credentials_page(form, status=422, failed_id=cred.id)
    vault.store(cred.workspace_id, form.platform.data, form.label.data, form.kind.data, secrets,
                credential=cred)
    return go(url_for("automations.credentials"))


@bp.post("/credentials/<int:credential_id>/delete")
@owner_required
def credential_delete(credential_id):
    scoped_or_404(Credential, credential_id).delete_instance()
    return go(url_for("automations.credentials"))

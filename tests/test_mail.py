"""The outbox: every e-mail is a row first; SMTP outages lose nothing; the dev outbox page."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from app.accounts.models import User
from app.db import connection, database, utcnow
from app.mail import service
from app.mail.models import OutboundEmail
from jobs import huey
from tests.conftest import PASSWORD, Client, build_app, staff_client
from tests.mailcatcher import MailCatcher, free_port, link_in


def make_app(app_config, **overrides):
    return build_app({**app_config, **overrides})


def sign_up(app, email="sam@example.com"):
    client = Client(app.test_client())
    response = client.post_form("/signup", {"name": "Sam Signup", "email": email,
                                            "password": PASSWORD})
    assert response.status_code == 200
    return client, response


def outbox() -> list[OutboundEmail]:
    with connection():
        return list(OutboundEmail.select().order_by(OutboundEmail.id))


@pytest.fixture
def down_port():
    """A loopback port where nothing listens (yet)."""
    return free_port()


def test_smtp_outage_keeps_the_email_queued_and_huey_retries_it(app_config, down_port):
    app = make_app(app_config, SMTP_URL=f"smtp://127.0.0.1:{down_port}")
    sign_up(app)  # the visitor's request succeeds although the mail server is down

    [email] = outbox()
    assert (email.to, email.status, email.attempts) == ("sam@example.com", "queued", 1)
    assert email.last_error.startswith("ConnectionRefusedError")
    assert email.sent_at is None
    # Huey saw the task raise and scheduled a retry of the same e-mail, with backoff.
    [retry] = [t for t in huey.scheduled() if t.args == (email.id,)]
    assert retry.name.endswith("deliver_email") and retry.retries == 7
    assert retry.eta is not None

    # The task body raises (that is what makes Huey retry) and counts the attempt.
    with app.app_context(), connection(), pytest.raises(ConnectionRefusedError):
        service.deliver(email.id)
    [email] = outbox()
    assert (email.status, email.attempts) == ("queued", 2)


def test_queued_email_is_delivered_once_smtp_is_back(app_config, down_port):
    app = make_app(app_config, SMTP_URL=f"smtp://127.0.0.1:{down_port}")
    sign_up(app)
    [email] = outbox()
    assert email.status == "queued"

    catcher = MailCatcher(port=down_port).start()
    try:
        with app.app_context(), connection():
            service.deliver(email.id)
            service.deliver(email.id)  # a second run (a duplicate retry) sends nothing more
        message = catcher.wait_for("sam@example.com", "Confirm your e-mail address")
        assert len(catcher.messages) == 1
    finally:
        catcher.stop()

    [email] = outbox()
    assert (email.status, email.attempts, email.last_error) == ("sent", 2, "")
    assert email.sent_at is not None
    # Multipart: a plain-text body and an HTML alternative, both with the link.
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    link = link_in(message)
    assert link in message.get_body(preferencelist=("html",)).get_content()
    assert message["From"] == app.config["MAIL_FROM"]

    # And the delivered link works.
    client = Client(app.test_client())
    assert client.get(urlsplit(link).path).status_code == 303
    with connection():
        assert User.by_email("sam@example.com").is_verified


def test_without_smtp_mail_waits_in_the_dev_outbox_with_clickable_links(app_config):
    app = make_app(app_config, SMTP_URL="")
    client, response = sign_up(app)
    assert "development outbox" in response.get_data(as_text=True)
    [email] = outbox()
    assert (email.status, email.attempts) == ("queued", 0)

    page = staff_client(app).get("/dev/outbox")  # staff only (tests/test_safe_defaults.py)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Confirm your e-mail address for Lumnar" in html and "To sam@example.com" in html
    token_link = email.text_body.split("http://localhost", 1)[1].split()[0]
    assert f'<a href="http://localhost{token_link}">' in html
    # Following the link from the outbox verifies the address.
    assert client.get(token_link).status_code == 303
    with connection():
        assert User.by_email("sam@example.com").is_verified


def test_dev_outbox_escapes_the_email_text(app_config):
    app = make_app(app_config, SMTP_URL="")
    client = Client(app.test_client())
    client.post_form("/signup", {"name": "<b>Bold</b>", "email": "b@example.com",
                                 "password": PASSWORD})
    html = staff_client(app).get("/dev/outbox").get_data(as_text=True)
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt;" in html


def test_dev_outbox_does_not_exist_in_production(app_config):
    app = make_app(app_config, SMTP_URL="", ENV_NAME="production")
    client, response = sign_up(app)
    assert "development outbox" not in response.get_data(as_text=True)
    page = client.get("/dev/outbox")
    assert page.status_code == 404
    assert "There is nothing at this address." in page.get_data(as_text=True)


def add_email(to, status="queued", age=timedelta(0), claimed_age=None) -> int:
    now = utcnow()
    return OutboundEmail.create(
        to=to, subject="s", text_body="t", html_body="<p>t</p>", status=status,
        created_at=now - age,
        claimed_at=None if claimed_age is None else now - claimed_age,
    ).id


def test_stalled_ids_picks_rows_left_queued_or_claimed_too_long(app, smtp):
    long_ago = service.CLAIM_TIMEOUT + timedelta(minutes=1)
    with app.app_context(), connection():
        old_queued = add_email("a@example.com", age=long_ago)
        add_email("b@example.com")  # queued just now: its own task still has it
        add_email("c@example.com", status="sent", age=long_ago)
        dead_worker = add_email("d@example.com", status="sending", age=long_ago,
                                claimed_age=long_ago)
        add_email("e@example.com", status="sending", age=long_ago, claimed_age=timedelta(0))
        assert service.stalled_ids() == [old_queued, dead_worker]


def test_outbox_sweep_delivers_the_stalled_rows(app, smtp):
    from jobs.mail import sweep_outbox

    long_ago = service.CLAIM_TIMEOUT + timedelta(minutes=1)
    with app.app_context(), connection():
        add_email("a@example.com", age=long_ago)
        add_email("d@example.com", status="sending", age=long_ago, claimed_age=long_ago)
        sweep_outbox()
        assert service.stalled_ids() == []
    smtp.wait_for("a@example.com")
    smtp.wait_for("d@example.com")
    assert [e.status for e in outbox()] == ["sent", "sent"]


def test_stalled_ids_is_empty_without_smtp(app_config):
    app = make_app(app_config, SMTP_URL="")
    with app.app_context(), connection():
        add_email("a@example.com", age=timedelta(days=1))
        assert service.stalled_ids() == []


def test_mail_is_only_queued_after_the_transaction_commits(app):
    with (app.test_request_context(), connection(), database.atomic(),
          pytest.raises(RuntimeError, match="after the transaction")):
        service.send("x@example.com", "verify", "subject", user=None, url="u")
    assert outbox() == []


def test_a_task_in_the_worker_links_to_pages_at_the_public_address(app):
    """In the consumer a task runs with no request of its own: the task context gives it one
    at LUMNAR_BASE_URL, so e-mails built there link to pages as e-mails built in a request do
    (a security alert's settings link, a billing e-mail's page)."""
    import threading

    from flask import has_app_context, url_for

    from app.accounts import alerts
    from app.mail.models import OutboundEmail
    from jobs import huey
    from jobs.context import task_context
    from tests.conftest import make_user

    make_user(app, email="worker@example.com", name="Wanda Worker")
    found = {}

    def as_the_consumer():  # a thread of its own: no app context, as in huey_consumer
        assert not has_app_context()
        with task_context():
            found["url"] = url_for("billing.billing_page", _external=True)
            alerts.send(["worker@example.com"], "A test alert", "Something happened.")

    assert huey.flask_app is app
    thread = threading.Thread(target=as_the_consumer)
    thread.start()
    thread.join()
    assert found["url"] == "http://localhost/dashboard/billing"
    with app.app_context(), connection():
        [mail] = OutboundEmail.select().where(OutboundEmail.subject == "A test alert")
    assert "http://localhost/dashboard/settings" in mail.text_body

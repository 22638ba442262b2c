"""The worker and the web process write to the one database at once, and the worker loses no
task: the real `huey_consumer` and uvicorn (tests/e2e/conftest.py), visitors writing over HTTP
from many threads while the team is away.

Each visitor message is a web-process write that hands the worker two tasks: an away notice
(stored for every member of the team) and a chat automation's run (which e-mails too). The
consumer runs them while the next messages are being written.
"""

import re
import secrets
import threading
from collections import Counter

import httpx
import pytest

from app import create_app
from app.accounts import service as accounts
from app.accounts.models import Membership, User, Workspace
from app.automations import service as automations
from app.automations.models import AutomationRun
from app.chat.models import Conversation
from app.db import connection
from app.mail.models import OutboundEmail
from tests.e2e.conftest import PASSWORD, HttpUser, confirmed_user_over_http, wait_until

VISITOR_THREADS = 6
VISITORS_EACH = 15
ORIGIN = "https://contention.example.com"
TOKEN_HEADER = "X-Lumnar-Visitor"
SETTLE_SECONDS = 180.0  # a deadline for the consumer to work through the batch, not a measure


@pytest.fixture(scope="module")
def server(live_server):
    return live_server


@pytest.fixture(scope="module")
def app(server):
    """This process's view of the server's database; its queue is the consumer's."""
    return create_app({"DATA_DIR": server.data_dir, "BASE_URL": server.url,
                       "HUEY_IMMEDIATE": False})


@pytest.fixture(scope="module")
def team(server, app):
    """An owner and a teammate (so each away notice is two e-mails), a site, and a chat
    automation that e-mails on every visitor message."""
    owner = confirmed_user_over_http(server, "contention")
    with HttpUser(server.url) as http:
        http.log_in(owner)
        name = f"Contention shop {secrets.token_hex(3)}"
        _, site_key = http.create_site(name, [ORIGIN])
    mate = f"mate-{secrets.token_hex(4)}@example.com"
    runs_to = f"runs-{secrets.token_hex(4)}@example.com"
    with app.test_request_context(), connection():
        owner_row = User.get(User.email == owner)
        workspace = Workspace.get_by_id(Membership.get(Membership.user == owner_row).workspace_id)
        accounts.sign_up("Mate Teammate", mate, PASSWORD)
        invitation = accounts.invite(workspace, owner_row, mate, Membership.AGENT)
        accounts.accept_invitation(accounts.make_token("invite", invitation.id),
                                   User.get(User.email == mate))
        automation = automations.create_automation(
            workspace.id, name="Tell sales", flow="email",
            config={"to": runs_to, "subject": "Lead: {{ event.text }}", "body": "{{ event.text }}"},
            trigger="chat", chat_event="message_received")
    return {"members": [owner, mate], "site_key": site_key, "site_name": name,
            "workspace": workspace.id, "automation": automation.id, "runs_to": runs_to}


def visit_and_write(base_url: str, site_key: str, texts: list[str], failures: list) -> None:
    """Visitors one after another, each leaving an e-mail and one message (a conversation)."""
    with httpx.Client(base_url=base_url, timeout=30, headers={"Origin": ORIGIN}) as http:
        for text in texts:
            token = http.post(f"/widget/{site_key}/visitors", data={"page": ORIGIN}).json()["token"]
            answer = http.post(f"/widget/{site_key}/messages",
                               data={"body": text, "email": f"{secrets.token_hex(4)}@example.org"},
                               headers={TOKEN_HEADER: token, "HX-Request": "true"})
            if answer.status_code != 200:
                failures.append((text, answer.status_code, answer.text[:300]))


def outbox(app, subject_like: str) -> list[OutboundEmail]:
    with app.app_context(), connection():
        return list(OutboundEmail.select().where(OutboundEmail.subject.contains(subject_like)))


def test_the_worker_loses_no_task_while_the_web_process_writes(server, app, team):
    log_start = len(server.log("worker"))
    texts = [[f"message {t}-{n} {secrets.token_hex(3)}" for n in range(VISITORS_EACH)]
             for t in range(VISITOR_THREADS)]
    failures: list = []
    writers = [threading.Thread(target=visit_and_write,
                                args=(server.url, team["site_key"], chunk, failures))
               for chunk in texts]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    written = [text for chunk in texts for text in chunk]

    def settled():
        server.check()
        # A task lost to a lock is lost for good: no need to wait out the deadline.
        assert "database is locked" not in server.log("worker")[log_start:], server.all_logs()
        with app.app_context(), connection():
            conversations = list(Conversation.select().where(
                Conversation.workspace == team["workspace"]))
            runs = list(AutomationRun.select().where(
                AutomationRun.automation == team["automation"]))
        notices = outbox(app, f"New chat message on {team['site_name']}")
        done = (len(conversations) == len(written)
                and all(c.away_notice_at and not c.away_pending for c in conversations)
                and len(runs) == len(written)
                and all(r.status in automations.FINAL for r in runs)
                and len(notices) == len(written) * len(team["members"]))
        return (conversations, runs, notices) if done else None

    conversations, runs, notices = wait_until(settled, SETTLE_SECONDS,
                                              "every notice stored and every run finished")
    log = server.log("worker")[log_start:]
    assert "database is locked" not in log and "Unhandled exception" not in log, log

    # Every run succeeded once, and its e-mail is in the outbox once.
    assert Counter(r.status for r in runs) == {"succeeded": len(written)}
    assert all(r.attempts == 1 for r in runs)
    leads = [e for e in outbox(app, "Lead: ") if e.to == team["runs_to"]]
    assert sorted(e.subject for e in leads) == sorted(f"Lead: {text}" for text in written)

    # Every message reached every member in exactly one away notice, and each conversation's
    # notice went to each member once.
    for member in team["members"]:
        mine = [e for e in notices if e.to == member]
        quoted = Counter(text for e in mine for text in written if text in e.text_body)
        assert quoted == Counter(written), member
        linked = Counter(int(m) for e in mine
                         for m in re.findall(r"/dashboard/conversations/(\d+)", e.text_body))
        assert linked == Counter(c.id for c in conversations), member

    # And each of those e-mails left over SMTP once (waiting for them also leaves the shared
    # consumer's queue as this test found it, for the tests that follow).
    stored = Counter((e.to, e.subject) for e in notices + leads)

    def delivered():
        sent = Counter((m["To"], m["Subject"]) for m in list(server.smtp.messages))
        sent = Counter({key: n for key, n in sent.items() if key in stored})
        return sent if sent.total() >= stored.total() else None

    assert wait_until(delivered, SETTLE_SECONDS, "every stored e-mail to be delivered") == stored

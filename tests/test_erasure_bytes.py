"""Deleted means gone from the bytes: once a conversation or a visitor is deleted (by the
visitor, by an agent, by retention), their words, name and e-mail are nowhere in the database
file, its WAL, or a backup made afterwards. The search index is where words outlive a plain
DELETE (FTS5 keeps them in its segments), so each word is also looked for as the index holds
it: lower-cased, and only its tail (FTS5 stores a term after the prefix it shares with the
previous one). A credential's secret is never in the bytes at all (encrypted)."""

import os
import secrets
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from app.automations.models import Credential
from app.chat.models import Conversation, Message
from app.db import connection, utcnow
from app.privacy import erasure
from app.widget.models import Visitor
from jobs.chat import purge_old_conversations
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    WidgetVisitor,
    fts_hits,
    index_search,
    online_fixture,
    site_fixture,
    ws_fixture,
)
from tests.test_backup_restore import backup
from tests.test_credentials import add as add_credential

pytestmark = pytest.mark.sqlite_only("SQLite's file, its WAL and FTS5's segments")

TAIL = 12  # characters of a lower-cased word looked for on their own (see the docstring)


def distinctive_word() -> str:
    """A word no file holds by chance, in mixed case, so that its lower-cased form (the
    search index's token) is found only where the index put it."""
    return f"Zqx{secrets.token_hex(5).upper()}Marmalade"


def traces(word: str) -> list[str]:
    """The forms in which `word` can sit in the files: as written, and as the index holds it."""
    return [word, word.lower()[-TAIL:]]


def database_files(app) -> list[Path]:
    """The database and everything SQLite keeps beside it (-wal, -shm)."""
    db = Path(app.config["DATABASE"])
    return sorted(db.parent.glob(db.name + "*"))


def found_in(paths, needles) -> dict[str, list[str]]:
    """Which needles occur in which file's raw bytes."""
    found = {}
    for path in paths:
        data = path.read_bytes()
        hits = [n for n in needles if n.encode() in data]
        if hits:
            found[path.name] = hits
    return found


class Person:
    """A widget visitor who gave a distinctive name and e-mail and wrote distinctive words,
    indexed for search as the worker does."""

    def __init__(self, app, site):
        tag = secrets.token_hex(4)
        self.name = f"Philippa Q{tag}"
        self.email = f"philippa.{tag}@example.org"
        self.words = [distinctive_word() for _ in range(3)]
        self.widget = WidgetVisitor.arrive(app, site.site_key)
        assert self.widget.profile(name=self.name, email=self.email).status_code == 200
        for body in (f"Hello, my order code is {self.words[0]}",
                     f"And the {self.words[1]} one, please.", f"A question: {self.words[2]}?"):
            assert self.widget.send(body).status_code == 200
        self.visitor_id = self.widget.record().id
        self.conversation_id = self.widget.conversation().id
        index_search()

    @property
    def needles(self) -> list[str]:
        return [self.name, self.email, *(t for w in self.words for t in traces(w))]


@pytest.fixture(name="person")
def person_fixture(app, site, online):
    return Person(app, site)


@pytest.fixture(name="bystander")
def bystander_fixture(app, site, online):
    """Another visitor of the same site, whose words must stay (and stay searchable)."""
    return Person(app, site)


def visitor_deletes_the_conversation(app, auth, person):
    assert person.widget.delete().status_code == 200


def agent_deletes_the_visitor(app, auth, person):
    response = auth.post_form(f"/dashboard/conversations/{person.conversation_id}/visitor/delete")
    assert response.status_code == 303


def retention_purges_them(app, auth, person):
    long_ago = utcnow() - timedelta(days=3650)
    with connection():
        Conversation.update(last_activity_at=long_ago).where(
            Conversation.id == person.conversation_id).execute()
        Visitor.update(last_seen_at=long_ago).where(Visitor.id == person.visitor_id).execute()
    with app.app_context():
        purge_old_conversations()


DELETIONS = [visitor_deletes_the_conversation, agent_deletes_the_visitor, retention_purges_them]


def test_the_files_hold_the_words_until_they_are_deleted(app, person, bystander):
    """The search below is real: before any deletion, every word is in the files as written
    and as the search index holds it, and so are the name and the e-mail."""
    everything = person.needles + bystander.needles
    found = found_in(database_files(app), everything)
    assert {n for hits in found.values() for n in hits} == set(everything)


@pytest.mark.parametrize("delete", DELETIONS, ids=lambda f: f.__name__)
def test_deleted_words_are_gone_from_the_file(app, auth, person, bystander, delete):
    """Whichever way a person's conversations go, the worker's erasure (run at once here)
    leaves none of their words, name or e-mail in the database, its WAL, or a backup made
    afterwards; the other visitor's words are still there and still found by search."""
    delete(app, auth, person)

    with connection():
        assert Conversation.get_or_none(Conversation.id == person.conversation_id) is None
    copy = backup(app)
    files = [*database_files(app), copy]
    assert found_in(files, person.needles) == {}
    assert found_in([copy], bystander.needles) == {copy.name: bystander.needles}
    assert all(fts_hits(word) for word in bystander.words)


def test_a_credential_secret_is_never_in_the_files_before_or_after_its_deletion(app, auth):
    """Credentials are stored encrypted: the secret's plain bytes are in no file while it is
    kept, nor once it is deleted, nor in a backup made then. The row itself (its encrypted
    payload, found before: the search is real) leaves the files with the next erasure run,
    whichever deletion asked for it."""
    secret = f"pat-{secrets.token_hex(12)}-wxyz"
    assert add_credential(auth, secret=secret, label="CRM").status_code == 303
    with connection():
        credential = Credential.get()
    payload = bytes(credential.payload).decode()
    found = found_in(database_files(app), [secret, payload])
    assert found and all(hits == [payload] for hits in found.values())

    response = auth.post_form(f"/dashboard/credentials/{credential.id}/delete")
    assert response.status_code == 303
    with app.app_context():
        erasure.request_erasure()  # what a deletion path asks once it has committed

    copy = backup(app)
    assert found_in([*database_files(app), copy], [secret, payload]) == {}


def test_deletions_while_a_run_is_queued_share_it_and_a_lost_run_blocks_nothing(
        app, auth, person):
    """One queued erasure run covers every deletion committed before it starts, so a deletion
    that finds one queued queues no other (its words stay until that run). A run that never
    started (a worker stopped) does not hold erasure back for good: after an hour its mark
    no longer counts, and the next deletion queues a run."""
    from jobs import huey
    from jobs.privacy import ERASURE_QUEUED, ERASURE_QUEUED_STALE_SECONDS

    huey.put(ERASURE_QUEUED, time.time())  # as a run queued a moment ago leaves it
    agent_deletes_the_visitor(app, auth, person)
    assert found_in(database_files(app), person.needles)  # left for the queued run

    huey.put(ERASURE_QUEUED, time.time() - ERASURE_QUEUED_STALE_SECONDS - 1)
    with app.app_context():
        erasure.request_erasure()
    assert found_in(database_files(app), person.needles) == {}
    assert huey.get(ERASURE_QUEUED, peek=True) is None  # taken by the run as it started


def test_the_erasure_rewrites_the_index_in_short_steps_each_committed_on_its_own(
        app, auth, person, bystander):
    """The index is rewritten OPTIMIZE_STEP_PAGES at a time, each step its own transaction,
    committed before the next begins (another connection sees the database change between
    two steps: SQLite's data_version), so that a chat message waits at most one short step;
    and the run still leaves nothing of the deleted words."""
    import sqlite3

    from app.chat.service import merge_search_index
    from app.db import database

    with connection():
        Conversation.delete().where(Conversation.id == person.conversation_id).execute()
    other = sqlite3.connect(app.config["DATABASE"])
    steps, versions = [], []

    def merge_step(pages):
        steps.append((pages, database.transaction_depth()))
        versions.append(other.execute("PRAGMA data_version").fetchone()[0])
        return merge_search_index(pages)

    try:
        with app.app_context(), connection():
            erasure.erase_traces(merge_step)
    finally:
        other.close()
    assert len(steps) >= 2 and set(steps) == {(-erasure.OPTIMIZE_STEP_PAGES, 1)}
    assert all(a != b for a, b in pairwise(versions))
    assert found_in(database_files(app), [t for w in person.words for t in traces(w)]) == {}
    assert all(fts_hits(word) for word in bystander.words)


def temporary_files() -> list[str]:
    """SQLite's temporary files this process holds open: it unlinks each as it opens it, so
    only /proc still names them."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if "etilqs_" in target:
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)")
def test_a_deletion_writes_no_copy_of_the_deleted_rows_to_a_temporary_file(app, person):
    """A statement inside a longer transaction keeps the pages it changes as they were (its
    statement journal), so that it alone can be undone; past 64 KiB SQLite writes that journal
    to a temporary file on disk. The file is unlinked, but its blocks hold the deleted words
    until the disk reuses them, out of reach of the erasure. Every connection keeps it in
    memory (temp_store). Shown both ways: with temp_store = FILE the same deletion does write
    one, so this probe would see it."""
    from app.db import PRAGMAS, database

    with connection():
        conv = Conversation.get_by_id(person.conversation_id)
        Message.insert_many([dict(conversation=conv.id, workspace_id=conv.workspace_id,
                                  sender="visitor", body=f"{person.words[0]} {n} " + "x" * 300)
                             for n in range(400)]).execute()

    def files_while_deleting() -> list[str]:
        with database.atomic() as transaction:
            Message.update(over_limit=True).where(Message.conversation == conv.id).execute()
            assert Conversation.delete().where(Conversation.id == conv.id).execute() == 1
            found = temporary_files()
            transaction.rollback()
        return found

    with app.app_context(), connection():
        assert files_while_deleting() == []
        database.execute_sql("PRAGMA temp_store = FILE")
        try:
            assert files_while_deleting() != []
        finally:
            database.execute_sql(f"PRAGMA temp_store = {PRAGMAS['temp_store']}")
        assert files_while_deleting() == []

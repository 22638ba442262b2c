"""Searching message text from the inbox: full-text (FTS5 on SQLite, a generated tsvector
column on PostgreSQL), scoped to the workspace, highlighted safely, and calm about anything a
person may type. The same promises on both engines; only FTS5's own upkeep (indexing after
the insert, merging segments) is SQLite's alone."""

import re
from urllib.parse import quote

import pytest

from app.chat import service
from app.chat.models import Message
from app.db import connection, database, dialect
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    WidgetVisitor,
    fts_hits,
    online_fixture,
    rival_fixture,
    site_fixture,
    text,
    ws_fixture,
)

NO_MATCH = "No messages match."

MESSAGES = [
    "Is the blue teapot still in stock?",
    "Bună ziua, aș dori o ședință de degustare",
    "Un café crème, s'il vous plaît",
    "I love it 😀 thanks",
    "Order (#42) AND \"gift wrap\" NOT needed: price^2 * 3 - discount",
]


@pytest.fixture(name="messages")
def messages_fixture(app, site, online):
    """Each message in its own conversation; returns {text: conversation id}."""
    found = {}
    for body in MESSAGES:
        guest = WidgetVisitor.arrive(app, site.site_key)
        assert guest.send(body).status_code == 200
        found[body] = guest.conversation().id
    return found


def search(client, q: str):
    return client.get(f"/dashboard/inbox?q={quote(q)}")


def hit_conversations(html: str) -> list[int]:
    results = re.search(r'<ul class="results">(.*?)</ul>', html, re.S)
    if not results:
        return []
    return [int(i) for i in re.findall(r"/dashboard/conversations/(\d+)#msg-", results.group(1))]


def test_search_finds_a_word_and_links_to_the_message(auth, messages):
    html = text(search(auth, "teapot"))
    assert hit_conversations(html) == [messages[MESSAGES[0]]]
    assert "Results for “teapot”" in html
    assert "Is the blue <mark>teapot</mark> still in stock?" in html


def test_last_word_also_matches_as_a_prefix(auth, messages):
    assert hit_conversations(text(search(auth, "blue teap"))) == [messages[MESSAGES[0]]]


def test_every_word_must_be_found(auth, messages):
    assert NO_MATCH in text(search(auth, "teapot degustare"))


def test_search_never_shows_another_workspaces_messages(auth, rival, messages):
    html = text(search(auth, "teapot"))  # rival's message: "Rival secret about teapots"
    assert "Rival secret" not in html
    assert hit_conversations(html) == [messages[MESSAGES[0]]]
    assert NO_MATCH in text(search(auth, "rival secret"))
    theirs = text(search(rival["client"], "teapot"))
    assert hit_conversations(theirs) == [rival["conversation"].id]


def test_results_are_newest_first(app, auth, site, messages):
    guest = WidgetVisitor.arrive(app, site.site_key)
    guest.send("Another teapot question")
    html = text(search(auth, "teapot"))
    assert hit_conversations(html) == [guest.conversation().id, messages[MESSAGES[0]]]


def test_highlight_marks_the_match_and_escapes_the_rest(app, auth, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    guest.send('<img src=x onerror=alert(1)> kettle & "mugs" <mark>fake</mark>')
    html = text(search(auth, "kettle"))
    assert ("&lt;img src=x onerror=alert(1)&gt; <mark>kettle</mark> &amp; &#34;mugs&#34; "
            "&lt;mark&gt;fake&lt;/mark&gt;") in html
    assert "<img src=x" not in html


ACCENTS = [
    ("cafe", MESSAGES[2]),       # diacritics are ignored both ways
    ("café crème", MESSAGES[2]),
    ("sedinta", MESSAGES[1]),    # Romanian comma-below ș and ț
    ("ședință", MESSAGES[1]),
    ("aș dori", MESSAGES[1]),
    ("BUNA ZIUA", MESSAGES[1]),
]


def test_search_ignores_accents_and_case(auth, messages):
    for query, stored in ACCENTS:
        response = search(auth, query)
        assert response.status_code == 200, query
        assert hit_conversations(text(response)) == [messages[stored]], query


OPERATORS = [
    ('"gift wrap"', MESSAGES[4]),
    ("gift AND wrap", MESSAGES[4]),  # AND is a plain word here, and it is in the message
    ("(#42)", MESSAGES[4]),
    ("price^2", MESSAGES[4]),
    ("order: gift", MESSAGES[4]),
    ("-discount", MESSAGES[4]),
    ("stock?", MESSAGES[0]),
    ("teapot*", MESSAGES[0]),
]


def test_operators_and_punctuation_are_plain_text(auth, messages):
    for query, stored in OPERATORS:
        response = search(auth, query)
        assert response.status_code == 200, query
        assert hit_conversations(text(response)) == [messages[stored]], query


ODD_QUERIES = [
    '"', '""', '"teapot', 'teapot"', "'", "''teapot", "*", "**", "^", ":", "body:teapot",
    "message_fts:teapot", "(", ")", "(teapot", "teapot)", "()", "-", "--teapot", "+", "AND",
    "OR", "NOT", "NEAR", "NEAR(teapot stock)", "NEAR/2", "teapot NOT stock", "teapot OR kettle",
    "{teapot}", "[x]", "%", "_", "\\", "\\\"", "teapot\x00", "\x00", "%ff", "😀", "😀😀 teapot",
    "ș", "ț", "中文", "שָׁלוֹם", "ﷺ", "\u200b", "e\u0301", "'; DROP TABLE message; --",
    "a" * 10_000, "teapot " * 500, " ".join(f"w{i}" for i in range(50)),
]


def test_any_input_gives_results_or_the_friendly_hint(auth, messages):
    for query in ODD_QUERIES:
        response = search(auth, query)
        assert response.status_code == 200, repr(query)
        html = text(response)
        assert ('<ul class="results">' in html) != (NO_MATCH in html), repr(query)


def test_emoji_alone_gives_the_friendly_hint(auth, messages):
    html = text(search(auth, "😀"))
    assert NO_MATCH in html
    assert "quotes and operators are treated as plain text" in html


def test_empty_search_shows_the_inbox(auth, messages):
    for q in ("", "   "):
        html = text(search(auth, q))
        assert NO_MATCH not in html and "Results for" not in html
        assert len(re.findall(r'<li id="conv-\d+" class="conv-row', html)) == len(MESSAGES)


def test_query_text_is_escaped_in_the_results_heading(auth, messages):
    html = text(search(auth, '<script>alert(1)</script>'))
    assert "<script>alert(1)" not in html
    assert "Results for “&lt;script&gt;alert(1)&lt;/script&gt;”" in html


def test_fts_query_quotes_every_word(app):
    assert service.fts_query('tea "pot" OR NOT*') == '"tea" "pot" "OR" "NOT"*'
    assert service.fts_query('" * ( ) : ^') is None
    assert service.fts_query(" ".join(str(i) for i in range(20))).count('"') == 24


def test_search_service_is_scoped_by_workspace_id(app, ws, rival, messages):
    with connection():
        assert [row[1] for row in service.search(ws, "teapot")] == [messages[MESSAGES[0]]]
        assert [row[1] for row in service.search(rival["ws"], "teapot")] == [
            rival["conversation"].id]
        assert service.search(ws + rival["ws"] + 1, "teapot") == []


@pytest.fixture(name="fts5")
def fts5_fixture(engine):
    """For tests of FTS5's own upkeep: messages indexed in steps after their insert (migration
    11), segments merged in steps (migration 8). PostgreSQL has no such upkeep to test."""
    if engine != "sqlite":
        pytest.skip("FTS5's upkeep only: PostgreSQL generates the search column with the row "
                    "and keeps its GIN index itself")


def test_the_index_is_merged_in_bounded_steps_outside_message_inserts(app, auth, site, online,
                                                                     fts5):
    with connection():
        automerge = database.execute_sql(
            "SELECT v FROM message_fts_config WHERE k = 'automerge'").fetchone()
    assert automerge == (0,)  # inserts no longer merge (migration 8)
    guest = WidgetVisitor.arrive(app, site.site_key)
    for i in range(12):
        assert guest.send(f"parcel number {i} and a lighthouse").status_code == 200
    with app.app_context(), connection():
        for _ in range(12):  # each indexing step leaves a segment of its own
            assert service.index_new_messages(limit=1) == 1
        assert service.merge_search_index() > 0
        while service.merge_search_index():  # bounded steps until nothing is left to merge
            pass
    html = text(search(auth, "lighthouse"))
    assert len(re.findall(r"<mark>lighthouse</mark>", html)) == 12


def test_after_the_workers_upkeep_every_message_is_found_and_nothing_is_left_to_do(
        app, auth, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    for i in range(12):
        assert guest.send(f"parcel number {i} and a lighthouse").status_code == 200
    with app.app_context(), connection():
        service.keep_search_index()  # the worker's minute (jobs.chat.merge_search_index)
        # Both steps report nothing left: SQLite's upkeep ran to its end, PostgreSQL has none.
        assert service.index_new_messages() == 0
        assert service.merge_search_index() == 0
    html = text(search(auth, "lighthouse"))
    assert len(re.findall(r"<mark>lighthouse</mark>", html)) == 12


def fts_rows():
    return database.execute_sql("SELECT count(*) FROM message_fts_docsize").fetchone()[0]


def test_sending_a_message_leaves_the_search_index_to_a_later_step(app, auth, site, online,
                                                                   fts5):
    guest = WidgetVisitor.arrive(app, site.site_key)
    with connection():
        before = fts_rows()
    assert guest.send("a question about a lighthouse").status_code == 200
    with app.app_context(), connection():
        assert fts_rows() == before  # the insert itself indexed nothing
        assert service.index_new_messages() == 1
        assert fts_rows() == before + 1
    assert "<mark>lighthouse</mark>" in text(search(auth, "lighthouse"))


def test_a_message_is_found_the_moment_it_is_sent_without_the_worker(app, auth, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("where is my umbrella").status_code == 200
    assert "<mark>umbrella</mark>" in text(search(auth, "umbrella"))  # the search indexed it


def fts5_integrity_check(word: str) -> None:
    # FTS5 checks the whole index against the messages, and raises if it was ever told to
    # delete what it was not given (its index would then be corrupt).
    database.execute_sql("INSERT INTO message_fts(message_fts) VALUES ('integrity-check')")


def gin_agrees_with_the_messages(word: str) -> None:
    # Nothing of ours writes PostgreSQL's index, but a generated column or an index left
    # behind by a delete would show here: the GIN index itself (sequential scans off, so the
    # planner must ask it) finds exactly the messages whose bodies hold the word today.
    with database.atomic():
        database.execute_sql("SET LOCAL enable_seqscan = off")
        by_index = database.execute_sql(
            "SELECT id FROM message WHERE search @@ to_tsquery('lumnar_search', %s) ORDER BY id",
            (word,)).fetchall()
        plan = "\n".join(r[0] for r in database.execute_sql(
            "EXPLAIN SELECT id FROM message WHERE search @@ to_tsquery('lumnar_search', %s)",
            (word,)).fetchall())
    by_body = database.execute_sql(
        "SELECT id FROM message WHERE to_tsvector('lumnar_search', body) "
        "@@ to_tsquery('lumnar_search', %s) ORDER BY id", (word,)).fetchall()
    assert "message_search" in plan  # the answer above came from the GIN index
    assert by_index == by_body


# The search index checking itself against the messages, in each engine's words.
CHECK_INDEX = {"sqlite": fts5_integrity_check, "postgres": gin_agrees_with_the_messages}


def test_deleting_messages_indexed_or_not_keeps_the_index_whole(app, auth, site, online):
    stays = WidgetVisitor.arrive(app, site.site_key)
    assert stays.send("a teapot that stays").status_code == 200
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("an indexed teapot").status_code == 200
    with app.app_context(), connection():
        service.index_new_messages()
    assert guest.send("a teapot not indexed yet").status_code == 200  # (SQLite: not yet)
    conversation = guest.conversation()
    with app.app_context(), connection():
        service.delete_conversation(conversation, "visitor")
        CHECK_INDEX[dialect()]("teapot")
        assert service.index_new_messages() == 0  # the deleted message is never indexed
    with connection():  # the index holds the message that stays, nothing of the deleted one
        kept = Message.get(Message.conversation == stays.conversation().id).id
    assert fts_hits("teapot") == [kept]
    assert hit_conversations(text(search(auth, "teapot"))) == [stays.conversation().id]

"""Retention: conversations older than their site's window, deleted in short transactions so
that live chat keeps answering while the clean-up runs."""

import time
from datetime import timedelta

from peewee import fn

from app.chat import events, live, service
from app.chat.models import ChatEvent, Conversation, Message, Presence
from app.db import Pace, database, utcnow
from app.widget.models import Site, Visitor

# How the purge shares SQLite's one write lock with live chat (app.db.Pace): conversations go
# one at a time, several to a transaction, which commits at the next statement once a chat
# write is announced, or is undone at once when the announcement comes while a statement runs
# (the chat writes, and the same step is done again: so a step keeps what it found to itself
# until its transaction has committed); then the purge rests until the chat is quiet. A conversation goes whole (its events, then the
# row, whose messages, files, search entries, labels, facts and rating follow by cascade and
# trigger: the cheapest way, 5.5 ms for 20 conversations of 10 messages where deleting the same
# messages 20 at a time by id took 1.5 ms per 20), after checking inside the transaction that
# it is still past its window (a visitor who wrote again keeps it). A long conversation's
# messages go first, a chunk a statement, so that no one statement holds the lock long.
# Measured by tests/bench/bench_privacy.py: see the README's retention notes. Five to a
# transaction at most: a chat write that meets one waits for its statement in progress and its
# commit, and on a busy machine the purge's thread is sometimes preempted inside them (commits
# of any size took 4-5 ms at the 99th percentile). With 20, chat delivery p99 during the purge
# was 1.9-2.5 times idle; with 5, 1.2-1.4 times, for a purge twice as long (more rests).
CONVERSATIONS = 5  # conversations read at a time, outside any transaction
LONG = 200  # messages: a conversation with more loses them a chunk at a time first
# Each purged message leaves a tombstone in the search index (FTS5, whose automatic merging is
# off: migration 8), in new segments; once a level holds 16 segments FTS5 merges them all inside
# the statement that wrote the last ("crisis merge"). Measured: one conversation's DELETE then
# held the write lock 100-160 ms, the chat's worst waits during a purge (delivery p99 33-43 ms
# against 10 idle). So after each transaction the purge merges until FTS5 finds nothing left
# to merge, a few pages a step, each step a paced transaction of its own (p99 17 ms).
SEARCH_MERGE_PAGES = 8
# Each event the purge records takes the workspace's next number, and a chat message numbered
# after it reaches the open streams only once the web process has read it back (a stream keeps
# its workspace's order). Recorded with every transaction, that was a wait for about one
# message in ten (measured: delivery p50 9 ms during the purge against 7 with no events). So
# the deletions are told in runs: with the transaction in progress once NOTICE_EVERY has passed
# since the last run, and in a last transaction at the end, each run ringing the web process
# at once (live.notify: its doorbell). Runs every 0.5 s held about 400 deletions, which the web
# process took 2-3 ms to read back while the chat messages numbered after them waited; every
# 0.1 s, about 40-100. A purge stopped in between leaves the last run's conversations deleted
# without a live notice: an open inbox shows them until it reloads (opening one finds
# nothing), a widget closes at its stream's next check.
NOTICE_EVERY = 0.1  # seconds
# The sweeps of many small rows (visitors, a long conversation's messages: _paced) commit after
# this long at most: what a chat write that meets one waits for is its commit, which grows with
# the pages it changed. Measured on 100,000 visitors against a chat writer announcing 100 times
# a second: writes that waited over 1 ms, 95 of 627 with 20 ms, 24 of 755 with 5 ms, 1 of 906
# with 2 ms, for a sweep of 6.9, 8.3 and 9.6 s.
SWEEP_LONGEST = 0.002


def _expired(site_id: int, cutoff):
    return (Conversation.site == site_id) & (Conversation.last_activity_at < cutoff)


def purge_expired(now=None) -> int:
    """Delete conversations whose last activity is older than their site's retention days."""
    now = now or utcnow()
    deleted = 0
    pace, notices, sweep = Pace(), Notices(), Pace(longest=SWEEP_LONGEST)
    for site in Site.select(Site.id, Site.retention_days):
        cutoff = now - timedelta(days=site.retention_days)
        expired = _expired(site.id, cutoff)
        while True:
            todo = list(Conversation.select(Conversation.id, Conversation.workspace).where(expired)
                        .order_by(Conversation.id).limit(CONVERSATIONS))
            if not todo:
                break
            long_ones = (Message.select(Message.conversation)
                         .where(Message.conversation.in_([c.id for c in todo]))
                         .group_by(Message.conversation).having(fn.COUNT(Message.id) > LONG))
            for row in long_ones:
                still = Conversation.select(Conversation.id).where(
                    (Conversation.id == row.conversation_id) & expired)
                _paced(sweep, Message, Message.conversation.in_(still), search=True)
            while todo:
                deleted += _some_conversations(pace, notices, todo, cutoff)
                _merge(pace)
        # Visitors with nothing left and not seen within the window go as well.
        _paced(sweep, Visitor, (Visitor.site == site.id) & (Visitor.last_seen_at < cutoff)
               & ~fn.EXISTS(Conversation.select().where(Conversation.visitor == Visitor.id)))
    if notices.waiting:
        with database.atomic():
            notices.record()
        notices.recorded()
    if deleted:
        live.notify()
    return deleted


class Notices:
    """The purged conversations whose "deleted" events are still to be recorded."""

    def __init__(self):
        self.waiting = []
        self.last = time.monotonic()

    def due(self, more: list) -> bool:
        return bool(self.waiting or more) and time.monotonic() - self.last >= NOTICE_EVERY

    def record(self, more: list = ()) -> None:
        """In the caller's transaction, the waiting ones and `more`: open inboxes and widgets
        drop them live, as for any other deletion. Forgotten only by recorded(), once that
        transaction has committed (a transaction the chat preempts is undone, events too)."""
        events.record([live.Written(None, c.workspace_id, c.id, ChatEvent.DELETED,
                                    actor="retention") for c in [*self.waiting, *more]])

    def recorded(self) -> None:
        self.waiting, self.last = [], time.monotonic()


def _some_conversations(pace: Pace, notices: Notices, todo: list, cutoff) -> int:
    """Delete conversations from the front of `todo` in one paced transaction; how many went."""

    def step():
        taken, gone = 0, []
        for conv in todo:
            taken += 1
            # By its id alone (the site's index would be walked instead) and still past the
            # window; its events only once it has gone.
            if Conversation.delete().where((Conversation.id == conv.id)
                                           & (Conversation.last_activity_at < cutoff)).execute():
                ChatEvent.delete().where(ChatEvent.conversation_id == conv.id).execute()
                gone.append(conv)
            if pace.yield_now():
                break
        told = notices.due(gone)
        if told:
            notices.record(gone)
            # The web process hears of them at once (its doorbell), not at its next poll: a
            # chat message numbered after them waits until it has read them.
            pace.after_commit(live.notify)
        return taken, gone, told

    taken, gone, told = pace.run(step)
    del todo[:taken]
    if told:
        notices.recorded()
    else:
        notices.waiting += gone
    return len(gone)


def _merge(pace: Pace) -> None:
    """Merge the search index's segments until no level holds enough to merge (FTS5 then
    changes nothing: service.merge_search_index answers 0), SEARCH_MERGE_PAGES a step."""
    pace.until_done(lambda: service.merge_search_index(SEARCH_MERGE_PAGES))


def _paced(pace: Pace, model, where, search: bool = False) -> None:
    """Delete the rows of `model` that `where` selects: `pace.chunk` rows a statement (the
    condition asked again in it), statements in a transaction until pace says to commit
    (asked before each statement, once it is built: Pace.execute);
    `search`: the search index merged after each transaction. The rows are read in the order
    of their ids, each select going on from the last id it found, so that no select walks
    again past the rows `where` keeps (visitors still chatting), with the write lock held. A
    row that only becomes due meanwhile, below the last id, waits for the next run."""
    after = 0

    def step():
        """(whether rows may be left, the last id it went past)."""
        last = after
        while True:
            found = pace.execute(model.select(model.id).where(where & (model.id > last))
                                 .order_by(model.id).limit(pace.chunk))
            if found is None:
                return True, last
            ids = [row[0] for row in found]
            if not ids:
                return False, last
            if pace.execute(model.delete().where(model.id.in_(ids) & where)) is None:
                return True, last
            last = ids[-1]

    more = True
    while more:
        more, after = pace.run(step)
        if search:
            _merge(pace)


def purge_stale_events(now=None) -> int:
    """Typing and read events matter only for a moment; keep a day of them for reconnects.
    Presence rows of streams that ended without saying goodbye go too."""
    now = now or utcnow()
    cutoff = now - timedelta(days=1)
    removed = 0
    while True:
        ids = [e.id for e in ChatEvent.select(ChatEvent.id).where(
            (ChatEvent.created_at < cutoff)
            & ChatEvent.kind.in_([ChatEvent.TYPING, ChatEvent.READ])).limit(1000)]
        if not ids:
            break
        ChatEvent.delete().where(ChatEvent.id.in_(ids)).execute()
        removed += len(ids)
    Presence.delete().where(Presence.seen_at < now - timedelta(minutes=5)).execute()
    return removed

"""Schema migrations: numbered steps recorded in a schema_version table.

Why not peewee-migrate: its generated diffs are one more moving part to review, and ours are
few and plain. Each step here is a function of the database; steps that add columns use
`add_columns`, which skips columns a fresh database already has (a fresh database creates
tables from the current models in step 1).
"""

from peewee import CharField, DateTimeField, IntegerField, Model

from app.accounts.models import ACCOUNT_MODELS
from app.db import database, dialect, utcnow


class SchemaVersion(Model):
    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)
    name = CharField(max_length=120)

    class Meta:
        database = database
        table_name = "schema_version"


def add_columns(table, **columns):
    """Add each column (given as its SQL definition) unless the table already has it.

    Plain ALTER TABLE ADD COLUMN: SQLite adds a NOT NULL column with a constant default in
    place. (playhouse's add_column rebuilds the table for NOT NULL, which fails with
    "database table is locked" on a table other rows reference.)"""
    present = {c.name for c in database.get_columns(table)}
    for name, definition in columns.items():
        if name not in present:
            database.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {definition}')


def _0001_initial(db):
    from app.mail.models import OutboundEmail

    db.create_tables([*ACCOUNT_MODELS, OutboundEmail], safe=True)


def _0002_live_chat(db):
    from app.chat.models import CHAT_MODELS, SEARCH_SCHEMA

    db.create_tables(CHAT_MODELS, safe=True)
    for sql in SEARCH_SCHEMA["created"][dialect()]:
        db.execute_sql(sql)


def _0003_site_usage(db):
    # Visitor messages a site sent each month, counted against a per-site limit: replaced by
    # the plan's monthly conversations per workspace (step 14 drops the table).
    pass


def _0004_unread_index(db):
    # The unread badge counts a workspace's conversations with unread messages on every
    # event; a partial index holds only those, so the count stays small at any size.
    db.execute_sql("CREATE INDEX IF NOT EXISTS conversation_unread "
                   "ON conversation (workspace_id) WHERE unread_count > 0")


def _0005_vault(db):
    from app.automations.models import AUTOMATION_MODELS
    from app.staff.models import AuditEntry

    db.create_tables([*AUTOMATION_MODELS, AuditEntry], safe=True)


def _0006_automations(db):
    from app.automations.models import Automation, AutomationRun
    from app.staff.models import AuditEntry

    add_columns("workspace", timezone="VARCHAR(64) NOT NULL DEFAULT 'UTC'",
                run_log_days="INTEGER NOT NULL DEFAULT 14",
                automations_paused="INTEGER NOT NULL DEFAULT 0")
    db.create_tables([Automation, AutomationRun, AuditEntry], safe=True)


def _0007_webhook_secret_index(db):
    # Each inbound webhook finds its automation by the secret in its URL: by index, not by
    # reading every automation. Unique, so one URL can never start two automations.
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS automation_webhook_secret "
                   "ON automation (webhook_secret) WHERE webhook_secret != ''")


def _0008_search_merges_in_background(db):
    # FTS5 merges its index segments inside the INSERT that tips a level over (a message
    # waited ~40 ms for one insert in a hundred at 1M messages). Off here; the worker merges
    # in small steps every minute instead (jobs.chat.merge_search_index).
    from app.chat.models import SEARCH_SCHEMA

    for sql in SEARCH_SCHEMA["merges_in_background"][dialect()]:
        db.execute_sql(sql)


def _0009_lockout_per_client(db):
    # Failures are counted per (address, client) now; the old per-address counters are
    # short-lived state, so they are dropped rather than carried over.
    from app.accounts.models import LoginThrottle

    db.create_tables([LoginThrottle], safe=True)
    db.execute_sql("DROP TABLE IF EXISTS login_throttle")


def _0010_message_client_id(db):
    # The id a browser's form sends with each message, so that a retry is stored once (the
    # same partial unique index as Message's in app/chat/models.py).
    add_columns("message", client_id="VARCHAR(64) NOT NULL DEFAULT ''")
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "message_client_id" ON "message" '
                   '("conversation_id", "sender", "client_id") WHERE "client_id" != \'\'')


def _0011_search_indexed_in_steps(db):
    # A message's words reached the search index through a trigger inside the message's own
    # insert: tokenizing was most of the insert's cost (measured: 75 µs of 88). New messages
    # are now indexed in short steps after the fact (app.chat.service.index_new_messages),
    # up to `indexed_to`; the delete and update triggers touch only what is indexed already
    # (FTS5 must never be told to delete what it was not given: its index would go wrong).
    from app.chat.models import SEARCH_SCHEMA

    for sql in SEARCH_SCHEMA["indexed_in_steps"][dialect()]:
        db.execute_sql(sql)


def _0012_events_numbered_per_workspace(db):
    # Events get a number per workspace, taken at commit time (app/chat/events.py): on
    # PostgreSQL ids can become visible out of order, and a stream that moved past a later id
    # never saw the earlier one. Existing rows keep their id as their number, and every
    # counter starts above the highest id, so a browser still holding an old id as its
    # Last-Event-ID neither misses nor repeats anything.
    from app.chat.models import EventCounter

    add_columns("chat_event", seq="INTEGER NOT NULL DEFAULT 0")
    db.execute_sql('UPDATE "chat_event" SET "seq" = "id" WHERE "seq" = 0')
    db.create_tables([EventCounter], safe=True)
    db.execute_sql('INSERT INTO "event_counter" ("workspace_id", "seq") '
                   'SELECT "id", (SELECT coalesce(max("id"), 0) FROM "chat_event") FROM "workspace" '
                   'WHERE "id" NOT IN (SELECT "workspace_id" FROM "event_counter")')
    db.execute_sql('DROP INDEX IF EXISTS "chat_event_workspace_id_id"')
    db.execute_sql('DROP INDEX IF EXISTS "chat_event_conversation_id_id"')
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "chat_event_workspace_id_seq" '
                   'ON "chat_event" ("workspace_id", "seq")')
    db.execute_sql('CREATE INDEX IF NOT EXISTS "chat_event_conversation_id_seq" '
                   'ON "chat_event" ("conversation_id", "seq")')


def _0013_widget_launcher_and_origins(db):
    # The launcher's own label and "load only after consent" per site, and the origins each
    # site's widget was loaded from or refused on (shown on the site's page).
    from app.widget.models import OriginSeen

    add_columns("site", launcher_label="VARCHAR(40) NOT NULL DEFAULT 'Chat with us'",
                consent_required="BOOLEAN NOT NULL DEFAULT FALSE")
    db.create_tables([OriginSeen], safe=True)


def _0014_billing(db):
    # Plans and Stripe billing (app/billing): the workspace's plan, its status and this
    # month's count of new conversations beside the plan's limit; the billing records; the
    # automations a smaller plan paused. The per-site monthly message count goes.
    from app.billing.models import BILLING_MODELS

    add_columns("workspace", plan="VARCHAR(16) NOT NULL DEFAULT 'free'",
                plan_status="VARCHAR(24) NOT NULL DEFAULT ''",
                conversation_limit="INTEGER DEFAULT 300",
                usage_month="VARCHAR(7) NOT NULL DEFAULT ''",
                month_conversations="INTEGER NOT NULL DEFAULT 0")
    add_columns("automation", paused_for_plan="BOOLEAN NOT NULL DEFAULT FALSE")
    db.create_tables(BILLING_MODELS, safe=True)
    db.execute_sql("DROP TABLE IF EXISTS site_usage")
    if "monthly_message_limit" in {c.name for c in db.get_columns("site")}:
        db.execute_sql('ALTER TABLE "site" DROP COLUMN "monthly_message_limit"')


def _0015_trust_surface(db):
    # Policy versions and their acknowledgements, the contact channel's requests, usage
    # insight's counters, and a workspace's suspension.
    from app.contact.models import CONTACT_MODELS
    from app.insight.models import INSIGHT_MODELS
    from app.policies.models import POLICY_MODELS

    db.create_tables([*POLICY_MODELS, *CONTACT_MODELS, *INSIGHT_MODELS], safe=True)
    add_columns("workspace", suspended_at={"sqlite": "DATETIME", "postgres": "TIMESTAMP"}[dialect()],
                suspended_reason="VARCHAR(500) NOT NULL DEFAULT ''",
                access_digest_after="INTEGER NOT NULL DEFAULT 0")
    # Security alerts: the browsers each account has signed in from.
    from app.accounts.models import KnownBrowser

    db.create_tables([KnownBrowser], safe=True)


def _0016_data_rights(db):
    # Exports, restriction of processing and objection records (app/privacy), and the
    # workspace's restriction switch.
    from app.privacy.export.models import EXPORT_MODELS
    from app.privacy.restriction.models import RESTRICTION_MODELS

    db.create_tables([*EXPORT_MODELS, *RESTRICTION_MODELS], safe=True)
    add_columns("workspace", processing_restricted="BOOLEAN NOT NULL DEFAULT FALSE",
                restricted_at={"sqlite": "DATETIME", "postgres": "TIMESTAMP"}[dialect()])


def _foreign_keys(table: str) -> bool:
    if dialect() == "postgres":
        return bool(database.execute_sql(
            "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            (table,)).fetchone())
    return bool(database.execute_sql(f'PRAGMA foreign_key_list("{table}")').fetchall())


def _drop_foreign_keys(model) -> None:
    """Rebuild `model`'s table as the model now declares it, without the foreign keys its
    first version had, keeping every row. PostgreSQL drops the constraints in place; SQLite
    cannot, so the table is renamed, made anew and copied (its indexes are made again)."""
    table = model._meta.table_name
    if not _foreign_keys(table):
        return  # made by a migration that already used the new model
    if dialect() == "postgres":
        for (name,) in database.execute_sql(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
                (table,)).fetchall():
            database.execute_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
        return
    database.execute_sql(f'ALTER TABLE "{table}" RENAME TO "{table}_old"')
    for (index,) in database.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (f"{table}_old",)).fetchall():
        database.execute_sql(f'DROP INDEX "{index}"')
    database.create_tables([model])
    columns = ", ".join(f'"{f.column_name}"' for f in model._meta.sorted_fields)
    database.execute_sql(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{table}_old"')
    database.execute_sql(f'DROP TABLE "{table}_old"')


def _0017_deletion(db):
    # Deletion of workspaces and accounts (app/privacy/deletion): the requests in their grace
    # period; the outbox learns which workspace and conversation an e-mail is about; the
    # access log loses its foreign keys, so that it outlives its workspace, anonymised.
    from app.mail.models import OutboundEmail
    from app.privacy.deletion.models import DELETION_MODELS
    from app.staff.models import AuditEntry

    db.create_tables(DELETION_MODELS, safe=True)
    add_columns("outbound_email", workspace_id="INTEGER", conversation_id="INTEGER")
    for field in (OutboundEmail.workspace_id, OutboundEmail.conversation_id):
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "outbound_email_{field.column_name}" '
                       f'ON "outbound_email" ("{field.column_name}")')
    _drop_foreign_keys(AuditEntry)


def _0019_business_hours(db):
    # A site's business hours (app/widget/hours.py): its own table, one row per site.
    from app.widget.hours import HOURS_MODELS

    db.create_tables(HOURS_MODELS, safe=True)


def _0020_identity_verification(db):
    # Signed-in visitors of customers' sites (app/widget/identity.py): each site's identity
    # secret with its counts, and the visitor each verified user id is.
    from app.widget.identity import IDENTITY_MODELS

    db.create_tables(IDENTITY_MODELS, safe=True)


def _0018_labels(db):
    # Labels on conversations and round-robin assignment (app/chat/labels.py).
    from app.chat.labels import LABEL_MODELS

    db.create_tables(LABEL_MODELS, safe=True)


def _0023_private_notes(db):
    # Agents' private notes are messages (sender "note"); the members they mention are rows
    # of their own (app/chat/notes.py).
    from app.chat.notes import NOTE_MODELS

    db.create_tables(NOTE_MODELS, safe=True)


def _0022_alert_settings(db):
    # Each person's alert choices (app/dashboard/alerts.py): sound, notifications, muted sites.
    from app.dashboard.alerts import ALERT_MODELS

    db.create_tables(ALERT_MODELS, safe=True)


def _0021_reports(db):
    # What the Reports page reads, per conversation, kept from the chat's events (app/reports).
    from app.reports.models import REPORT_MODELS

    db.create_tables(REPORT_MODELS, safe=True)


def _0024_satisfaction_ratings(db):
    # Visitors' ratings of their resolved conversations (app/chat/ratings.py).
    from app.chat.ratings import RATING_MODELS

    db.create_tables(RATING_MODELS, safe=True)


def _0025_widget_languages(db):
    # The widget's default language and per-language texts of each site (app/widget/language.py).
    from app.widget.language import LANGUAGE_MODELS

    db.create_tables(LANGUAGE_MODELS, safe=True)


def _0026_report_stamps(db):
    # The Reports page keeps each past day's figures between views (app/reports/service.py):
    # every write to a workspace's facts takes a new stamp from its cursor and puts it on the
    # rows it writes, so that a day shows it changed. Existing rows start at 0, before any
    # stamp given. The index gets the stamp, so that each day's check reads the index alone.
    add_columns("report_fact", stamp="INTEGER NOT NULL DEFAULT 0")
    add_columns("report_cursor", stamp="INTEGER NOT NULL DEFAULT 0")
    db.execute_sql('DROP INDEX IF EXISTS "report_fact_workspace_id_started"')
    db.execute_sql('CREATE INDEX IF NOT EXISTS "report_fact_workspace_id_started_stamp" '
                   'ON "report_fact" ("workspace_id", "started", "stamp")')


STEPS = [
    (1, "initial", _0001_initial),
    (2, "live_chat", _0002_live_chat),
    (3, "site_usage", _0003_site_usage),
    (4, "unread_index", _0004_unread_index),
    (5, "vault", _0005_vault),
    (6, "automations", _0006_automations),
    (7, "webhook_secret_index", _0007_webhook_secret_index),
    (8, "search_merges_in_background", _0008_search_merges_in_background),
    (9, "lockout_per_client", _0009_lockout_per_client),
    (10, "message_client_id", _0010_message_client_id),
    (11, "search_indexed_in_steps", _0011_search_indexed_in_steps),
    (12, "events_numbered_per_workspace", _0012_events_numbered_per_workspace),
    (13, "widget_launcher_and_origins", _0013_widget_launcher_and_origins),
    (14, "billing", _0014_billing),
    (15, "trust_surface", _0015_trust_surface),
    (16, "data_rights", _0016_data_rights),
    (17, "deletion", _0017_deletion),
    (18, "labels", _0018_labels),
    (19, "business_hours", _0019_business_hours),
    (20, "identity_verification", _0020_identity_verification),
    (21, "reports", _0021_reports),
    (22, "alert_settings", _0022_alert_settings),
    (23, "private_notes", _0023_private_notes),
    (24, "satisfaction_ratings", _0024_satisfaction_ratings),
    (25, "widget_languages", _0025_widget_languages),
    (26, "report_stamps", _0026_report_stamps),
]


def pending():
    database.create_tables([SchemaVersion], safe=True)
    done = {row.version for row in SchemaVersion.select()}
    return [step for step in STEPS if step[0] not in done]


# Two releases starting at once must not both migrate. On SQLite each step's BEGIN IMMEDIATE
# already makes the second wait, then find the step done; on PostgreSQL transactions run side
# by side, so the whole run holds an advisory lock (a number of our choosing: "LUMN").
ADVISORY_KEY = 0x4C554D4E
RUN_LOCK = {"sqlite": (None, None),
            "postgres": (f"SELECT pg_advisory_lock({ADVISORY_KEY})",
                         f"SELECT pg_advisory_unlock({ADVISORY_KEY})")}


def run() -> list[str]:
    """Apply every pending step, each in its own transaction; returns the names applied."""
    lock, unlock = RUN_LOCK[dialect()]
    if lock:
        database.execute_sql(lock)
    try:
        applied = []
        for version, name, step in pending():
            with database.atomic("IMMEDIATE"):
                # Asked again inside the step's transaction: on SQLite another run may have
                # applied the step while this one waited for its BEGIN IMMEDIATE, and its
                # version row would then be written twice (UNIQUE constraint failed).
                if SchemaVersion.get_or_none(SchemaVersion.version == version):
                    continue
                step(database)
                SchemaVersion.create(version=version, name=name)
            applied.append(f"{version:04d}_{name}")
        return applied
    finally:
        if unlock:
            database.execute_sql(unlock)

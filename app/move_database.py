"""`flask migrate-to DATABASE_URL`: move this SQLite database into an empty PostgreSQL one.

The target is migrated first (the same steps, in PostgreSQL's form), then every table is
copied in foreign-key order, in batches by id (memory stays flat however large the tables), each
value converted by its model field as any write would be; each table's id sequence then
continues after the copied ids, and the row counts of both sides are compared. Run it with
Lumnar stopped: a write landing meanwhile would be left behind (the counts would say so).
"""

import click
from peewee import CompositeKey, Tuple, sort_models

from app import migrations
from app.db import LumnarPostgres, connection, database, from_url

BATCH = 500


class MoveRefused(click.ClickException):
    pass


def product_models() -> list:
    """Every table the product keeps, parents before children."""
    from app.accounts.models import ACCOUNT_MODELS
    from app.automations.models import AUTOMATION_MODELS
    from app.billing.models import BILLING_MODELS
    from app.chat.labels import LABEL_MODELS
    from app.chat.models import CHAT_MODELS
    from app.chat.notes import NOTE_MODELS
    from app.chat.ratings import RATING_MODELS
    from app.contact.models import CONTACT_MODELS
    from app.dashboard.alerts import ALERT_MODELS
    from app.insight.models import INSIGHT_MODELS
    from app.mail.models import OutboundEmail
    from app.policies.models import POLICY_MODELS
    from app.privacy.deletion.models import DELETION_MODELS
    from app.privacy.export.models import EXPORT_MODELS
    from app.privacy.restriction.models import RESTRICTION_MODELS
    from app.reports.models import REPORT_MODELS
    from app.staff.models import AuditEntry
    from app.widget.hours import HOURS_MODELS
    from app.widget.identity import IDENTITY_MODELS
    from app.widget.language import LANGUAGE_MODELS
    from app.widget.models import OriginSeen

    return sort_models([*ACCOUNT_MODELS, OutboundEmail, *CHAT_MODELS, *LABEL_MODELS, OriginSeen,
                        *AUTOMATION_MODELS, AuditEntry, *BILLING_MODELS, *POLICY_MODELS,
                        *CONTACT_MODELS, *INSIGHT_MODELS, *EXPORT_MODELS, *RESTRICTION_MODELS,
                        *DELETION_MODELS, *REPORT_MODELS, *HOURS_MODELS,
                        *IDENTITY_MODELS, *NOTE_MODELS, *ALERT_MODELS, *RATING_MODELS,
                        *LANGUAGE_MODELS])


def copy_all(source, target: LumnarPostgres, echo=lambda line: None) -> dict:
    """Copy every product table from `source` into `target` (migrated, empty); {table:
    (rows in source, rows in target)}. Refuses a target that holds any row already."""
    models = product_models()
    # The schema first, on the target (the proxy points there while the steps run).
    database.initialize(target)
    try:
        with connection():
            migrations.run()
            filled = [m._meta.table_name for m in models if m.select().exists()]
        if filled:
            raise MoveRefused("the target database already holds rows in "
                              f"{', '.join(filled)}: give an empty database")
        for model in models:
            columns, pk = list(model._meta.sorted_fields), model._meta.primary_key
            # A key of several columns (usage insight's day, kind, name) pages by all of them,
            # compared as one row value (SQLite orders by the columns, not by a row value).
            keys = ([model._meta.fields[name] for name in pk.field_names]
                    if isinstance(pk, CompositeKey) else [pk])
            # By identity: a peewee field's == builds an expression (always true to index()).
            at = [next(i for i, column in enumerate(columns) if column is k) for k in keys]
            last, copied = None, 0
            with target.atomic():
                while True:  # by key, a batch at a time: memory stays flat
                    query = model.select(*columns).order_by(*keys).limit(BATCH).tuples()
                    if last is not None:
                        query = query.where(Tuple(*keys) > Tuple(*last) if len(keys) > 1
                                            else keys[0] > last[0])
                    batch = list(query.execute(source))
                    if not batch:
                        break
                    model.insert_many(batch, fields=columns).execute(target)
                    copied, last = copied + len(batch), [batch[-1][i] for i in at]
                if getattr(pk, "field_type", None) == "AUTO":
                    # New rows continue after the copied ids (never reusing one).
                    table = model._meta.table_name
                    target.execute_sql(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                        f"coalesce(max(\"id\"), 1), max(\"id\") IS NOT NULL) FROM \"{table}\"")
            echo(f"{model._meta.table_name}: {copied} rows")
        return {m._meta.table_name: (m.select().count(source), m.select().count(target))
                for m in models}
    finally:
        target.close_all()


def register_cli(app) -> None:
    @app.cli.command("migrate-to")
    @click.argument("url")
    def migrate_to(url):
        """Copy this SQLite database into the empty PostgreSQL database at URL (postgresql://…)
        and check every table's row count. Stop Lumnar first."""
        if app.config.get("DATABASE_URL"):
            raise MoveRefused("this is already running on DATABASE_URL: unset it, so that "
                              "the SQLite file is the source")
        if not url.startswith(("postgresql://", "postgres://")):
            raise MoveRefused("give a postgresql:// URL")
        source = database.obj
        try:
            counts = copy_all(source, from_url(url, 2), echo=click.echo)
        finally:
            database.initialize(source)
        wrong = {t: c for t, c in counts.items() if c[0] != c[1]}
        if wrong:
            raise MoveRefused("row counts differ: " + ", ".join(
                f"{t} {a} here, {b} there" for t, (a, b) in wrong.items()))
        click.echo(f"moved {sum(a for a, _ in counts.values())} rows in {len(counts)} tables; "
                   "every count matches. Set DATABASE_URL (and REDIS_URL, LUMNAR_SECRET_KEY, "
                   "LUMNAR_MASTER_KEYS) and start Lumnar on PostgreSQL.")

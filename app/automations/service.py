"""Automations: set them up, fire their triggers, run them with retries, and keep their run logs."""

import functools
import json
import random
import secrets
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import available_timezones

from croniter import CroniterError, croniter
from flask import current_app
from peewee import SQL, fn

from app import background, insight
from app.accounts import alerts
from app.accounts.models import Membership, User, Workspace
from app.automations import redact, schedules, vault
from app.automations.flows import registry
from app.automations.models import Automation, AutomationRun
from app.billing import limits as billing
from app.db import database, epoch_seconds, sql, utcnow
from app.errors import RuleError
from app.mail import service as mail
from app.privacy import erasure
from app.privacy.restriction.service import check_may_process
from app.timezones import zone

# The ticker runs once a minute; a slot found this long after its time was missed (the worker
# was down), and its run says so.
LATE_AFTER = timedelta(minutes=2)
TICK_BATCH = 500  # automations handled per write transaction: keeps each one short
PURGE_BATCH = 500
LOG_LIMIT = 64 * 1024
ERROR_LIMIT = 500
WEBHOOK_BODY_LIMIT = 64 * 1024
FAILURE_MAIL_EVERY = timedelta(hours=1)
MAX_ATTEMPTS = 10
# A queued run whose task was lost (the process stopped between commit and enqueue) is
# enqueued again after this long; running it twice is impossible, see _claim.
STALLED_AFTER = timedelta(minutes=10)
FINAL = (AutomationRun.SUCCEEDED, AutomationRun.FAILED, AutomationRun.SKIPPED)


def _enqueue(run_ids, delay: float | None = None) -> None:
    """Hand runs to the worker. Call after the rows are committed: the worker reads them
    from its own connection."""
    if delay:
        for run_id in run_ids:
            background.enqueue("automations.run", run_id, delay=delay)
    else:
        background.enqueue_many("automations.run", [(run_id,) for run_id in run_ids])


# --- time ------------------------------------------------------------------------------------


def _local(utc_naive: datetime, tz_name: str) -> datetime:
    return utc_naive.replace(tzinfo=timezone.utc).astimezone(zone(tz_name))


def _utc(aware: datetime) -> datetime:
    return aware.astimezone(timezone.utc).replace(tzinfo=None)


def next_slot(cron: str, tz_name: str, after_utc: datetime) -> datetime | None:
    """The first time after `after_utc` that `cron` matches, read in the zone `tz_name`
    (so "0 9 * * *" is nine o'clock there, summer and winter). UTC naive.

    None when no time matches: a schedule stored before schedules were checked (such as
    "0 0 31 2 *") is then simply never due, instead of failing the ticker or a resume."""
    try:
        return _utc(croniter(cron, _local(after_utc, tz_name)).get_next(datetime))
    except CroniterError:
        return None


def _latest_slot(cron: str, tz_name: str, at_utc: datetime) -> datetime:
    """The last slot at or before `at_utc`."""
    start = _local(at_utc + timedelta(seconds=1), tz_name)
    return _utc(croniter(cron, start).get_prev(datetime))


def _slots_between(cron: str, tz_name: str, first: datetime, last: datetime, cap=1000) -> int:
    """How many slots lie in [first, last] (at most `cap`), to tell how many were missed."""
    it = croniter(cron, _local(first - timedelta(seconds=1), tz_name))
    count = 0
    while count < cap and _utc(it.get_next(datetime)) <= last:
        count += 1
    return count


def _fmt_local(utc_naive: datetime, tz_name: str) -> str:
    return f"{_local(utc_naive, tz_name):%Y-%m-%d %H:%M} ({tz_name or 'UTC'})"


# --- set-up ----------------------------------------------------------------------------------


def _workspace(workspace_id: int) -> Workspace:
    return Workspace.get_by_id(workspace_id)


def _check(workspace_id, name, flow, config, trigger, cron, chat_event, max_attempts) -> dict:
    """Every field's value cleaned, or ConfigError naming each bad one (settings included)."""
    errors, values = {}, {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Give the automation a name."
    elif len(name) > 120:
        errors["name"] = "Keep the name under 120 characters."
    values["name"] = name
    try:
        values["config"] = registry.validate_config(flow, config or {}, workspace_id)
    except registry.ConfigError as exc:
        errors.update(exc.errors)
    values["flow"] = flow
    if trigger not in Automation.TRIGGERS:
        errors["trigger"] = "Choose how the automation starts."
    values["trigger"] = trigger
    cron = " ".join((cron or "").split())
    values["cron"], values["chat_event"] = "", ""
    if trigger == Automation.SCHEDULE:
        if not cron:
            errors["cron"] = "Enter a schedule, like 0 9 * * 1-5 (weekdays at nine)."
        elif problem := schedules.problem(cron, utcnow()):
            errors["cron"] = problem
        values["cron"] = cron
    elif trigger == Automation.CHAT:
        if chat_event not in Automation.CHAT_EVENTS:
            errors["chat_event"] = "Choose the chat event that starts it."
        values["chat_event"] = chat_event
    if max_attempts in (None, ""):
        values["max_attempts"] = 3
    else:
        try:
            values["max_attempts"] = int(max_attempts)
            if not 1 <= values["max_attempts"] <= MAX_ATTEMPTS:
                raise ValueError
        except (TypeError, ValueError):
            errors["max_attempts"] = f"Enter a number of tries from 1 to {MAX_ATTEMPTS}."
    if errors:
        raise registry.ConfigError(errors)
    return values


def _schedule_fields(automation: Automation, workspace: Workspace, now: datetime) -> None:
    if (automation.trigger == Automation.SCHEDULE and not automation.paused
            and not workspace.automations_paused):
        automation.next_run_at = next_slot(automation.cron, workspace.timezone, now)
    else:
        automation.next_run_at = None
    if automation.trigger == Automation.WEBHOOK and not automation.webhook_secret:
        automation.webhook_secret = secrets.token_urlsafe(32)
    elif automation.trigger != Automation.WEBHOOK:
        automation.webhook_secret = ""


def create_automation(workspace_id: int, *, name, flow, config: dict, trigger, cron="",
                      chat_event="", max_attempts=None) -> Automation:
    values = _check(workspace_id, name, flow, config, trigger, cron, chat_event, max_attempts)
    billing.check_activation(workspace_id)  # a new automation is active at once
    workspace = _workspace(workspace_id)
    now = utcnow()
    automation = Automation(workspace=workspace_id, created_at=now, updated_at=now,
                            **{**values, "config": json.dumps(values["config"])})
    _schedule_fields(automation, workspace, now)
    automation.save()
    insight.count("automation.created")
    return automation


def update_automation(automation: Automation, *, name, flow, config: dict, trigger, cron="",
                      chat_event="", max_attempts=None) -> Automation:
    values = _check(automation.workspace_id, name, flow, config, trigger, cron, chat_event,
                    max_attempts)
    rescheduled = (values["trigger"], values["cron"]) != (automation.trigger, automation.cron)
    for key, value in values.items():
        setattr(automation, key, json.dumps(value) if key == "config" else value)
    now = utcnow()
    automation.updated_at = now
    if rescheduled or automation.trigger != Automation.SCHEDULE:
        _schedule_fields(automation, _workspace(automation.workspace_id), now)
    automation.save()
    return automation


MAX_LOG_DAYS = 365


@functools.cache
def time_zones() -> list[str]:
    """Every IANA zone name this system knows (the tzdata package ships them)."""
    return sorted(z for z in available_timezones() if "/" in z or z == "UTC")


def update_settings(workspace_id: int, timezone_name: str, run_log_days) -> Workspace:
    """The workspace's time zone (schedules are read in it) and how long run logs are kept.
    A new zone moves every active schedule's next slot at once."""
    errors = {}
    timezone_name = (timezone_name or "").strip()
    if timezone_name not in time_zones():
        errors["timezone"] = "Choose a time zone from the list, like Europe/Paris."
    try:
        days = int(str(run_log_days).strip())
        if not 1 <= days <= MAX_LOG_DAYS:
            raise ValueError
    except ValueError:
        errors["run_log_days"] = f"Enter a number of days from 1 to {MAX_LOG_DAYS}."
    if errors:
        raise registry.ConfigError(errors)
    workspace = _workspace(workspace_id)
    now = utcnow()
    with database.atomic():
        Workspace.update(timezone=timezone_name, run_log_days=days).where(
            Workspace.id == workspace_id).execute()
        workspace.timezone, workspace.run_log_days = timezone_name, days
        for automation in Automation.select().where(
                (Automation.workspace == workspace_id) & (Automation.trigger == Automation.SCHEDULE)):
            _schedule_fields(automation, workspace, now)
            automation.save(only=[Automation.next_run_at])
    return workspace


def add_credential(workspace_id: int, platform: str, label: str, kind: str, secrets: dict, *,
                   by: User, user_agent: str = "", replacing=None):
    """Store a credential in the vault (or replace one), then tell the workspace's owners."""
    credential = vault.store(workspace_id, platform, label, kind, secrets, credential=replacing)
    alerts.credential_changed(workspace_id, "replaced" if replacing else "added", label, by,
                              user_agent)
    return credential


def remove_credential(credential, *, by: User, user_agent: str = "") -> None:
    credential.delete_instance()
    erasure.request_erasure()  # its encrypted row leaves the file's bytes too
    alerts.credential_changed(credential.workspace_id, "removed", credential.label, by, user_agent)


def delete_automation(automation: Automation) -> None:
    automation.delete_instance()  # its runs go with it (ON DELETE CASCADE)


def pause(automation: Automation) -> None:
    automation.paused = True
    automation.next_run_at = None
    automation.updated_at = utcnow()
    automation.save()


def resume(automation: Automation) -> None:
    """Scheduling starts again from now: slots that passed while paused are not 'missed'.
    The plan must allow one more active automation."""
    check_may_process(automation.workspace)  # restricted: held until an owner lifts it
    billing.check_activation(automation.workspace_id)
    automation.paused = False
    automation.paused_for_plan = False
    automation.updated_at = utcnow()
    _schedule_fields(automation, _workspace(automation.workspace_id), utcnow())
    automation.save()


def pause_all(workspace_id: int) -> None:
    with database.atomic():
        Workspace.update(automations_paused=True).where(Workspace.id == workspace_id).execute()
        Automation.update(next_run_at=None).where(Automation.workspace == workspace_id).execute()


def resume_all(workspace_id: int) -> None:
    now = utcnow()
    with database.atomic():
        Workspace.update(automations_paused=False).where(Workspace.id == workspace_id).execute()
        workspace = _workspace(workspace_id)
        for automation in Automation.select().where(
                (Automation.workspace == workspace_id) & (Automation.trigger == Automation.SCHEDULE)
                & (Automation.paused == False)):  # noqa: E712 (peewee expression)
            Automation.update(next_run_at=next_slot(automation.cron, workspace.timezone, now)) \
                .where(Automation.id == automation.id).execute()


def is_active(automation: Automation) -> bool:
    workspace = automation.workspace
    return (not automation.paused and not workspace.automations_paused
            and workspace.suspended_at is None and not workspace.processing_restricted)


# --- triggers --------------------------------------------------------------------------------


def _new_runs(rows: list[dict]) -> list[int]:
    """Insert runs, skipping any (automation, slot) that exists already; the new ids."""
    if not rows:
        return []
    query = (AutomationRun.insert_many(rows).on_conflict_ignore()
             .returning(AutomationRun.id))
    return [row.id for row in query.execute()]


def run_now(automation: Automation, dry_run: bool = False, payload=None) -> AutomationRun:
    """A manual run (or, with dry_run, a test run that sends nothing). A paused automation
    only takes test runs; a workspace that restricts processing takes none, not even a
    staff member's test run."""
    check_may_process(automation.workspace)
    if not dry_run and automation.workspace.suspended_at is not None:
        raise RuleError("This workspace is suspended: its automations do not run.")
    if not dry_run and not is_active(automation):
        raise RuleError("This automation is paused: resume it to run it.")
    run = AutomationRun.create(
        automation=automation, workspace=automation.workspace_id, trigger=Automation.MANUAL,
        payload=json.dumps(payload or {}, default=str), dry_run=dry_run)
    _enqueue([run.id])
    # In immediate mode (tests) the run is over already: answer with what it became.
    return AutomationRun.get_by_id(run.id) if background.runs_at_once() else run


def inbound_webhook(secret: str, payload: dict) -> AutomationRun | None:
    """A run for the webhook automation whose secret URL was called; None when no automation
    has that secret. A paused automation refuses with RuleError (status 409)."""
    if not secret or len(secret) > 64:
        return None
    automation = (Automation.select(Automation, Workspace).join(Workspace)
                  .where((Automation.webhook_secret == secret)
                         & (Automation.trigger == Automation.WEBHOOK)).first())
    if automation is None:
        return None
    if not is_active(automation):
        raise RuleError("This automation is paused.", status=409)
    run = AutomationRun.create(automation=automation, workspace=automation.workspace_id,
                               trigger=Automation.WEBHOOK, payload=json.dumps(payload, default=str))
    _enqueue([run.id])
    return run


def publish_chat_event(workspace_id: int, event: str, data: dict) -> int:
    """Start every active automation of the workspace waiting for `event`; how many started.

    The chat service calls it after its transaction commits. One indexed query (the
    workspace's automations) and nothing else when none match, so chat stays fast."""
    if event not in Automation.CHAT_EVENTS:
        raise ValueError(f"unknown chat event {event!r}")
    ids = [a.id for a in Automation.select(Automation.id).join(Workspace).where(
        (Automation.workspace == workspace_id) & (Automation.trigger == Automation.CHAT)
        & (Automation.chat_event == event) & (Automation.paused == False)  # noqa: E712
        & (Workspace.automations_paused == False)  # noqa: E712
        & Workspace.suspended_at.is_null()
        & (Workspace.processing_restricted == False))]  # noqa: E712
    if not ids:
        return 0
    payload = json.dumps({"event": event, **data}, default=str)
    with database.atomic():
        run_ids = _new_runs([{"automation": a, "workspace": workspace_id,
                              "trigger": Automation.CHAT, "payload": payload} for a in ids])
    _enqueue(run_ids)
    return len(run_ids)


def tick(now: datetime | None = None) -> int:
    """Create the runs of every due schedule slot and hand them to the worker; how many.

    Idempotent: each batch is read and written inside one write transaction, and a run's
    (automation, slot) is unique, so a second ticker (another consumer, a restart in the
    middle) finds nothing left to do for the same slots."""
    now = now or utcnow()
    created: list[int] = []
    # Many automations share a schedule ("0 9 * * *" in one zone): work each slot out once.
    slots: dict[tuple, tuple] = {}
    while True:
        with database.atomic():
            due = list(
                Automation.select(Automation.id, Automation.workspace, Automation.cron,
                                  Automation.next_run_at, Workspace.timezone)
                .join(Workspace)
                .where((Automation.next_run_at <= now)
                       & (Automation.trigger == Automation.SCHEDULE)
                       & (Automation.paused == False)  # noqa: E712
                       & (Workspace.automations_paused == False)  # noqa: E712
                       & Workspace.suspended_at.is_null()
                       & (Workspace.processing_restricted == False))  # noqa: E712
                .order_by(Automation.next_run_at).limit(TICK_BATCH).tuples())
            if not due:
                break
            rows, moves = [], []
            for automation_id, workspace_id, cron, slot, tz_name in due:
                key = (cron, tz_name, slot)
                if key not in slots:
                    try:
                        run = _slot_run(0, 0, cron, slot, tz_name, now)
                        following = next_slot(cron, tz_name, max(now, run["slot"]))
                        # No next slot: a stored schedule that never fires; it runs no more.
                        slots[key] = (run, following) if following else (None, None)
                    except (ValueError, KeyError):  # a schedule croniter no longer reads
                        slots[key] = (None, None)
                run, following = slots[key]
                if run:
                    rows.append({**run, "automation": automation_id, "workspace": workspace_id})
                moves.append((following, automation_id))
            created += _new_runs(rows)
            field = Automation.next_run_at
            database.cursor().executemany(
                sql("UPDATE automation SET next_run_at = ? WHERE id = ?"),
                [(field.db_value(at), automation_id) for at, automation_id in moves])
    _enqueue(created)
    return len(created)


def _slot_run(automation_id, workspace_id, cron, slot, tz_name, now) -> dict:
    """The run row for a due slot. Slots missed while nothing ticked (the worker was down)
    run once, for the latest of them, and the log says so."""
    note = f"Scheduled for {_fmt_local(slot, tz_name)}."
    payload = {"slot": slot.isoformat() + "Z"}
    if now - slot >= LATE_AFTER:
        latest = _latest_slot(cron, tz_name, now)
        missed = _slots_between(cron, tz_name, slot, latest)
        late_by = int((now - slot).total_seconds() // 60)
        if latest > slot:
            note = (f"Late: {missed if missed < 1000 else 'over 1000'} scheduled slots from "
                    f"{_fmt_local(slot, tz_name)} to {_fmt_local(latest, tz_name)} passed while "
                    "automations were not running; this one run stands for them.")
            slot = latest
        else:
            note = (f"Late: the slot at {_fmt_local(slot, tz_name)} passed while automations "
                    f"were not running; it runs now, {late_by} min late.")
        payload = {"slot": slot.isoformat() + "Z", "late": True, "missed_slots": missed}
    return {"automation": automation_id, "workspace": workspace_id,
            "trigger": Automation.SCHEDULE, "slot": slot, "payload": json.dumps(payload),
            "log": f"{now:%H:%M:%S} {note}"}


def requeue_stalled(now: datetime | None = None) -> int:
    """Enqueue again the runs whose task was lost; how many.

    Queued runs whose task never arrived go back in the queue. A run still "running" long
    after any attempt could last (its requests time out in seconds) lost its worker midway
    (a crash, a redeploy): that attempt counts as failed, and the run is tried again while
    it has tries left, or marked failed."""
    now = now or utcnow()
    ids = [r.id for r in AutomationRun.select(AutomationRun.id).where(
        (AutomationRun.status == AutomationRun.QUEUED)
        & (AutomationRun.created_at < now - STALLED_AFTER)).limit(1000)]
    stuck = list(AutomationRun.select(AutomationRun.id, AutomationRun.attempts,
                                      AutomationRun.dry_run, Automation.max_attempts)
                 .join(Automation)
                 .where((AutomationRun.status == AutomationRun.RUNNING)
                        & (AutomationRun.started_at < now - STALLED_AFTER)).limit(1000))
    note = f"\n{now:%H:%M:%S} The worker stopped during this attempt."
    for run in stuck:
        tries_left = not run.dry_run and run.attempts < (run.automation.max_attempts or 1)
        AutomationRun.update(
            status=AutomationRun.RETRYING if tries_left else AutomationRun.FAILED,
            log=AutomationRun.log.concat(note),
            error="" if tries_left else "The worker stopped during the last attempt.",
            finished_at=None if tries_left else now,
        ).where((AutomationRun.id == run.id)
                & (AutomationRun.status == AutomationRun.RUNNING)).execute()
        if tries_left:
            ids.append(run.id)
    _enqueue(ids)
    return len(ids)


# --- running ---------------------------------------------------------------------------------


def retry_delay(attempt: int) -> float:
    """Seconds before try `attempt + 1`: doubling from the base, with jitter (between half and
    all of it), so that many runs failing together do not all come back at the same moment."""
    base = float(current_app.config.get("AUTOMATIONS_RETRY_BASE_SECONDS", 30))
    full = base * 2 ** (attempt - 1)
    return full / 2 + random.uniform(0, full / 2)


# The worker's hot path is three statements a run, written out in SQL: peewee building them
# cost more than SQLite running them (measured by tests/bench/bench_automations.py).
CLAIM_SQL = (
    "UPDATE automation_run SET status = 'running', attempts = attempts + 1, started_at = ? "
    "WHERE id = ? AND status IN ('queued', 'retrying') "
    "RETURNING automation_id, workspace_id, trigger, payload, dry_run, attempts, log")
AUTOMATION_SQL = (
    "SELECT a.name, a.flow, a.config, a.max_attempts, a.paused, "
    # A suspended workspace's automations are held as if paused (nothing is deleted); so are
    # those of a workspace that restricts processing, dry runs included (see execute).
    "(w.automations_paused OR w.suspended_at IS NOT NULL), w.processing_restricted, "
    "EXISTS (SELECT 1 FROM credential c WHERE c.workspace_id = a.workspace_id) "
    "FROM automation a JOIN workspace w ON w.id = a.workspace_id WHERE a.id = ?")
FINISH_SQL = (
    "UPDATE automation_run SET status = ?, log = ?, error = ?, finished_at = ?, "
    "duration_ms = COALESCE(duration_ms, 0) + ? WHERE id = ?")


def _claim(run_id: int, now: datetime) -> AutomationRun | None:
    """Take the run for this worker, or None. Only one can: a duplicate task finds it taken."""
    row = database.execute_sql(sql(CLAIM_SQL), (str(now), run_id)).fetchone()
    if row is None:
        return None
    automation_id, workspace_id, trigger, payload, dry_run, attempts, log = row
    return AutomationRun(id=run_id, automation=automation_id, workspace=workspace_id,
                         trigger=trigger, payload=payload, dry_run=bool(dry_run),
                         attempts=attempts, log=log, status=AutomationRun.RUNNING)


def _automation(automation_id: int) -> tuple[Automation, bool] | None:
    """The automation (with its workspace's pause) and whether the workspace has credentials."""
    row = database.execute_sql(sql(AUTOMATION_SQL), (automation_id,)).fetchone()
    if row is None:
        return None
    name, flow, config, max_attempts, paused, workspace_paused, restricted, has_credentials = row
    automation = Automation(id=automation_id, name=name, flow=flow, config=config,
                            max_attempts=max_attempts, paused=bool(paused))
    return automation, bool(workspace_paused), bool(restricted), bool(has_credentials)


def execute(run_id: int) -> AutomationRun | None:
    """Run one attempt of a run (the worker's task). Failures are retried with backoff up to
    the flow's or the automation's number of tries; the last one e-mails the owners."""
    now = utcnow()
    run = _claim(run_id, now)
    if run is None:
        return None  # finished, running elsewhere, or gone
    found = _automation(run.automation_id)
    if found is None:
        return None
    automation, workspace_paused, restricted, has_credentials = found
    automation.workspace = run.workspace_id
    previous = run.log + "\n" if run.log else ""
    if restricted:  # queued before the restriction: it does not run, not even as a dry run
        return _finish(run, AutomationRun.SKIPPED, previous + f"{now:%H:%M:%S} Skipped: the "
                       "workspace restricts processing.", "", [])
    if not run.dry_run and (automation.paused or workspace_paused):
        return _finish(run, AutomationRun.SKIPPED,
                       previous + f"{now:%H:%M:%S} Skipped: the automation is paused.", "", [])
    flow_max = None
    try:
        flow = registry.get(automation.flow)
        flow_max = flow.max_attempts
    except registry.ConfigError:
        flow = None
    max_attempts = 1 if run.dry_run else (flow_max or automation.max_attempts or 1)
    # Every credential value of the workspace, read once: no log or error holds one, in any
    # common encoding, whichever flow and whichever way it came there.
    values = vault.secret_values(run.workspace_id) if has_credentials else []
    ctx = registry.RunContext(
        run.workspace_id, automation.id, run.id, run.trigger,
        json.loads(run.payload or "{}"), json.loads(automation.config or "{}"),
        dry_run=run.dry_run, automation_name=automation.name, secrets=values)
    header = f"{now:%H:%M:%S} Attempt {run.attempts} of {max_attempts}" + (
        " (dry run: nothing is sent)" if run.dry_run else "") + "."
    started = time.monotonic()
    status, error = AutomationRun.SUCCEEDED, ""
    try:
        if flow is None:
            raise registry.FlowFailed(f"The flow “{automation.flow}” no longer exists.")
        flow.run(ctx)
        ctx.log("Done.")
    except registry.FlowSkipped as exc:
        status = AutomationRun.SKIPPED
        ctx.log(f"Skipped: {exc}")
    except registry.FlowFailed as exc:
        status, error = AutomationRun.FAILED, ctx.redact(str(exc)) or "The flow failed."
        ctx.log(f"Failed: {error}")
    except Exception as exc:  # a flow's bug must fail its run, not the worker
        status = AutomationRun.FAILED
        error = ctx.redact(f"{type(exc).__name__}: {exc}")
        ctx.log(f"Failed with an unexpected error: {error}")
    duration = int((time.monotonic() - started) * 1000)
    log = previous + header + "\n" + ctx.log_text()
    error = ctx.clip(error, ERROR_LIMIT)
    retry = status == AutomationRun.FAILED and run.attempts < max_attempts
    if retry:
        delay = retry_delay(run.attempts)
        log += f"\n{utcnow():%H:%M:%S} Trying again in {delay:.0f} s."
        status = AutomationRun.RETRYING
    run = _finish(run, status, log, error, ctx.redactor, duration)
    if retry:
        _enqueue([run.id], delay=delay)
    elif status == AutomationRun.FAILED and not run.dry_run:
        notify_failure(automation, run)
    return run


def _finish(run, status, log, error, secrets, duration_ms=0) -> AutomationRun:
    """Store the attempt's end; `secrets` (values or the run's Redactor) are redacted from
    the log before it is cut to LOG_LIMIT."""
    log = redact.cap(log, LOG_LIMIT, secrets)
    finished = None if status == AutomationRun.RETRYING else str(utcnow())
    database.execute_sql(sql(FINISH_SQL), (status, log, error, finished, duration_ms, run.id))
    run.status, run.log, run.error = status, log, error
    return run


def owner_emails(workspace_id: int) -> list[str]:
    return [u.email for u in User.select(User.email).join(Membership).where(
        (Membership.workspace == workspace_id) & (Membership.role == Membership.OWNER))]


def notify_failure(automation: Automation, run: AutomationRun) -> bool:
    """E-mail the owners that a run failed for good: at most once per automation an hour,
    so that a broken schedule does not flood them. True when e-mails went out."""
    now = utcnow()
    base = current_app.config["BASE_URL"]
    # "Mailed" and the e-mails commit together: a crash between the two must not leave the
    # owners unmailed for an hour (the outbox sweep sends stored e-mails whose hand-over
    # was lost).
    with database.atomic():
        claimed = Automation.update(last_failure_mail_at=now).where(
            (Automation.id == automation.id)
            & (Automation.last_failure_mail_at.is_null()
               | (Automation.last_failure_mail_at <= now - FAILURE_MAIL_EVERY))).execute()
        if not claimed:
            return False
        emails = mail.store(list(owner_emails(automation.workspace_id)), "automation_failed",
                            f"Automation “{automation.name}” failed", automation=automation,
                            run=run, url=f"{base}/dashboard/automations/{automation.id}/runs/{run.id}")
    mail.hand_over([e.id for e in emails])
    return True


# --- retention and figures -------------------------------------------------------------------


def purge_run_logs(now: datetime | None = None) -> int:
    """Delete finished runs older than each workspace's run_log_days, a batch at a time (a
    short write each); how many went."""
    now = now or utcnow()
    deleted = 0
    for workspace_id, days in Workspace.select(Workspace.id, Workspace.run_log_days).tuples():
        cutoff = now - timedelta(days=max(int(days or 0), 1))
        while True:
            batch = (AutomationRun.select(AutomationRun.id)
                     .where((AutomationRun.workspace == workspace_id)
                            & (AutomationRun.created_at < cutoff)
                            & AutomationRun.status.in_(FINAL))
                     .limit(PURGE_BATCH))
            with database.atomic():
                count = AutomationRun.delete().where(AutomationRun.id.in_(batch)).execute()
            deleted += count
            if count < PURGE_BATCH:
                break
    return deleted


def runs_per_day(workspace_id: int, days: int = 30, automation_id: int | None = None,
                 today: date | None = None) -> list[tuple[date, int, int]]:
    """(day, succeeded, failed) for each of the last `days` days in the workspace's time zone,
    oldest first, zeros included."""
    tz_name = _workspace(workspace_id).timezone
    local_zone = zone(tz_name)
    today = today or _local(utcnow(), tz_name).date()
    first = today - timedelta(days=days - 1)
    since = _utc(datetime.combine(first, datetime.min.time(), tzinfo=local_zone))
    # Counted per quarter hour in SQL (a few thousand groups at most), then put into local
    # days here, where the zone's offsets (half and quarter hours included) are known.
    quarter = epoch_seconds(AutomationRun.created_at) / 900
    query = (AutomationRun.select(quarter.alias("q"), AutomationRun.status, fn.COUNT(1))
             .where((AutomationRun.workspace == workspace_id)
                    & (AutomationRun.created_at >= since)
                    & AutomationRun.status.in_([AutomationRun.SUCCEEDED, AutomationRun.FAILED]))
             # By position: PostgreSQL cannot tell two parameterised copies apart.
             .group_by(SQL("1"), AutomationRun.status))
    if automation_id is not None:
        query = query.where(AutomationRun.automation == automation_id)
    counts = {first + timedelta(days=i): [0, 0] for i in range(days)}
    for q, status, n in query.tuples():
        day = datetime.fromtimestamp(q * 900, tz=timezone.utc).astimezone(local_zone).date()
        if day in counts:
            counts[day][0 if status == AutomationRun.SUCCEEDED else 1] += n
    return [(day, ok, failed) for day, (ok, failed) in counts.items()]

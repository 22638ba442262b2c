"""Lumnar's Flask application factory."""

import click
from flask import Flask
from htmx_flask import Htmx
from peewee import OperationalError

from app import config as config_module
from app import db, security
from app.extensions import csrf, limiter

ROOT = config_module.ROOT


def create_app(config=None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(config_module.load(config))
    problems = config_module.production_problems(app.config)
    if problems:
        # Refuse now, naming each setting: a server that starts with them is open to abuse.
        raise SystemExit("Lumnar will not start in production with settings that only suit a "
                         "laptop (on a machine of your own, set LUMNAR_ENV=development):\n- "
                         + "\n- ".join(problems))
    shared_problems = config_module.shared_problems(app.config)
    if shared_problems:
        raise SystemExit("Lumnar will not start on a shared database or Redis without these "
                         "settings in the environment:\n- " + "\n- ".join(shared_problems))
    if app.config["TRUST_PROXY"]:
        app.wsgi_app = security.behind_proxies(app.wsgi_app, app.config["TRUST_PROXY"])

    Htmx(app)
    csrf.init_app(app)
    limiter.init_app(app)
    db.init_app(app)

    import jobs

    jobs.init_app(app)

    from app import billing, insight

    billing.init_app(app)
    insight.init_app(app)

    from app.chat import wakeups

    # Processes that share a PostgreSQL database tell each other of chat events over Redis; on
    # one SQLite file, by the web process's doorbell (app/chat/wakeups.py).
    if db.is_postgres():
        wakeups.configure(app.config["REDIS_URL"])
    else:
        wakeups.configure(None, app.config["DATABASE"])

    from app.automations import vault

    try:
        with db.connection():
            vault.check_keys(app.config)
    except vault.VaultError as exc:
        # Refuse to start now, with the reason, rather than fail at the first automation run.
        raise SystemExit(f"Lumnar cannot start: {exc}") from None
    except OperationalError:
        pass  # the database itself cannot be opened: /healthz reports that with a 503

    from app.accounts import passwords, sessions
    from app.widget import language as widget_language

    passwords.configure(app)
    widget_language.init_app(app)  # the widget in the visitor's language
    sessions.init_app(app)
    security.init_app(app)

    from app.accounts.views import bp as accounts_bp
    from app.automations.views import bp as automations_bp
    from app.automations.views_webhooks import bp as hooks_bp
    from app.billing.views import bp as billing_bp
    from app.billing.views import hooks as stripe_hooks_bp
    from app.chat.ratings import bp as ratings_bp
    from app.chat.views import bp as chat_bp
    from app.chat.views_labels import bp as labels_bp
    from app.chat.views_notes import bp as notes_bp
    from app.contact.views import bp as contact_bp
    from app.dashboard.views import bp as dashboard_bp
    from app.dashboard.views_alerts import bp as alerts_bp
    from app.insight.views import bp as insight_bp
    from app.mail.views import bp as mail_bp
    from app.paging import RowIdConverter
    from app.policies.views import bp as policies_bp
    from app.privacy.deletion.views import bp as deletion_bp
    from app.privacy.export.views import bp as export_bp
    from app.privacy.restriction.views import bp as restriction_bp
    from app.privacy.views import bp as privacy_bp
    from app.public.views import bp as public_bp
    from app.reports.views import bp as reports_bp
    from app.staff.views import bp as staff_bp
    from app.widget.views import bp as widget_bp
    from app.widget.views import sites_bp
    from app.widget.views_hours import bp as hours_bp
    from app.widget.views_identity import bp as identity_bp
    from app.widget.views_language import bp as languages_bp

    # Before any route: an id past SQLite's integers is then a 404 on every route, never a 500.
    app.url_map.converters["int"] = RowIdConverter
    app.register_blueprint(public_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(chat_bp)
    app.register_blueprint(notes_bp)
    app.register_blueprint(labels_bp)
    app.register_blueprint(ratings_bp)
    app.register_blueprint(automations_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(widget_bp)
    app.register_blueprint(sites_bp)
    app.register_blueprint(hours_bp)
    app.register_blueprint(identity_bp)
    app.register_blueprint(languages_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(billing_bp)
    app.register_blueprint(policies_bp)
    app.register_blueprint(contact_bp)
    app.register_blueprint(insight_bp)
    app.register_blueprint(privacy_bp)
    app.register_blueprint(export_bp)
    app.register_blueprint(restriction_bp)
    app.register_blueprint(deletion_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(stripe_hooks_bp)
    if app.config["DEV_OUTBOX"]:
        app.register_blueprint(mail_bp)

    register_cli(app)
    return app


def register_cli(app: Flask) -> None:
    @app.cli.command("migrate")
    def migrate_command():
        """Apply pending database migrations."""
        from app import migrations

        with db.connection():
            applied = migrations.run()
        click.echo("migrations applied: " + (", ".join(applied) if applied else "none pending"))

    @app.cli.command("grant-staff")
    @click.argument("email")
    @click.option("--revoke", is_flag=True, help="Take staff rights away instead.")
    def grant_staff(email, revoke):
        """Give (or with --revoke take) Lumnar staff rights to the user with EMAIL."""
        from app.accounts.models import User

        with db.connection():
            user = User.by_email(email)
            if user is None:
                raise click.ClickException(f"no user with e-mail {email}")
            user.is_staff = not revoke
            user.save()
        click.echo(f"{user.email}: is_staff={user.is_staff}")

    from flask.cli import AppGroup

    vault_cli = AppGroup("vault", help="The credential vault's keys.")

    @vault_cli.command("rotate-master")
    @click.option("--new-key", is_flag=True,
                  help="Make a new master key first (only with the data/master_keys file).")
    def rotate_master(new_key):
        """Re-wrap every workspace's data key under the newest master key."""
        from app.automations import vault

        if new_key:
            if app.config["MASTER_KEYS"]:
                raise click.ClickException("With LUMNAR_MASTER_KEYS set, put the new key first "
                                           "in that variable yourself, then run this again.")
            vault.add_master_key(app.config["DATA_DIR"])
        with db.connection():
            count = vault.rotate_master()
        click.echo(f"re-wrapped {count} workspace keys under the newest master key; "
                   "older keys can be removed once every backup made before now has expired")

    @vault_cli.command("rekey")
    @click.argument("workspace_id", type=int)
    def rekey(workspace_id):
        """Give WORKSPACE_ID a fresh data key and re-encrypt its credentials under it."""
        from app.automations import vault

        with db.connection():
            count = vault.rekey_workspace(workspace_id)
        click.echo(f"re-encrypted {count} credentials of workspace {workspace_id}")

    app.cli.add_command(vault_cli)

    billing_cli = AppGroup("billing", help="Plans and Stripe.")

    @billing_cli.command("setup")
    @click.option("--live", is_flag=True, help="Allow a live-mode key (real money).")
    def billing_setup(live):
        """Create the plans' products and prices in Stripe and print the settings to use."""
        from app.billing import service as billing

        key = app.config["STRIPE_SECRET_KEY"]
        if not key:
            raise click.ClickException("set STRIPE_SECRET_KEY first (a test-mode key, sk_test_…)")
        if key.startswith(("sk_live_", "rk_live_")) and not live:
            raise click.ClickException("this is a live-mode key: run with --live if you mean it")
        try:
            settings = billing.setup_stripe()
        except billing.stripe.StripeError as exc:
            raise click.ClickException(f"Stripe refused: {exc.user_message or exc}") from None
        click.echo("Set these in the environment of every web process and worker:")
        for name, value in settings.items():
            click.echo(f"{name}={value}")

    app.cli.add_command(billing_cli)

    @app.cli.command("demo")
    def demo_command():
        """Create the demo account when the database has no users yet, and print its login
        (in development, on every start: it is a demo, kept in data/demo-login)."""
        from app.accounts.models import User
        from app.widget import demo

        kept = app.config["DATA_DIR"] / "demo-login"
        development = app.config["ENV_NAME"] == "development"
        with db.connection():
            created = demo.create_demo()
            if created is None and development and kept.exists():
                email, _, password = kept.read_text().strip().partition(" ")
                if User.by_email(email) is not None:
                    created = email, password
        if created:
            email, password = created
            if development and not kept.exists():
                kept.touch(mode=0o600)
                kept.write_text(f"{email} {password}\n")
            click.echo(f"demo login: {email} / {password}")
        else:
            click.echo("demo: the database already has users; log in with your own account")

    from app import backup, move_database

    backup.register_cli(app)
    move_database.register_cli(app)

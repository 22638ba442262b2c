"""Fixtures: a fresh SQLite file per test, the Flask app, a client, users, and real SMTP."""

import re

import pytest

from app import create_app, migrations
from app.db import connection
from tests.mailcatcher import MailCatcher

PASSWORD = "correct horse battery"


@pytest.fixture
def smtp():
    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture
def app_config(tmp_path, smtp):
    return {
        "TESTING": True,
        "DATA_DIR": tmp_path,
        "SECRET_KEY": "test-secret-key",
        "HUEY_IMMEDIATE": True,  # tasks run inline; end-to-end tests use a real consumer
        "RATELIMIT_ENABLED": False,
        "SMTP_URL": smtp.url,
        "BASE_URL": "http://localhost",
    }


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    with app.app_context(), connection():
        migrations.run()
    return app


class Client:
    """Flask's test client plus the CSRF token a browser would have from the page it shows."""

    def __init__(self, flask_client):
        self.raw = flask_client

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def csrf(self) -> str:
        html = self.raw.get("/privacy").get_data(as_text=True)
        return re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)

    def post_form(self, url, data=None, htmx=False, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf())
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        return self.raw.post(url, data=data, headers=headers, **kwargs)


@pytest.fixture
def client(app):
    return Client(app.test_client())


def make_user(app, email="owner@example.com", name="Olive Owner", password=PASSWORD):
    """A verified account with its own workspace, made through the same service as sign-up."""
    from app.accounts import service
    from app.models import User, utcnow

    with app.test_request_context(), connection():
        service.sign_up(name, email, password)
        user = User.by_email(email)
        user.email_verified_at = utcnow()
        user.save()
        return user


@pytest.fixture
def user(app):
    return make_user(app)


def log_in(client, email="owner@example.com", password=PASSWORD):
    response = client.post_form("/login", {"email": email, "password": password})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


@pytest.fixture
def auth(client, user):
    log_in(client)
    return client

"""The app starts on a fresh database and serves its public pages."""


def test_public_pages_render(client):
    for path in ("/", "/privacy", "/login", "/signup", "/password/forgot"):
        assert client.get(path).status_code == 200, path


def test_login_reaches_dashboard(auth):
    page = auth.get("/dashboard/inbox")
    assert page.status_code == 200
    assert "Olive Owner" in page.get_data(as_text=True) or "workspace" in page.get_data(as_text=True)

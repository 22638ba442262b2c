"""Exports in Chromium against the real server, worker and SMTP: an owner asks from the Privacy
& data page, watches it being prepared, gets the e-mailed link, and downloads a ZIP that opens."""

import json
import re
import zipfile

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import confirmed_user_over_http, log_in
from tests.mailcatcher import link_in


def test_export_from_the_page_arrives_by_email_and_downloads_a_zip(page, live_server, new_context, tmp_path):
    email = confirmed_user_over_http(live_server, "export", name="Ellen Export")
    log_in(page, email)
    page.goto("/dashboard/privacy")
    section = page.locator("#export")
    expect(section.get_by_role("heading", name="Get a copy of your data")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("button", name="Export the workspace").click()
    # The section follows the worker (htmx every 2 s) until the export is ready.
    expect(section.get_by_role("status")).to_contain_text("is ready", timeout=20_000)
    expect(page.get_by_role("button", name="Export the workspace")).to_be_visible()
    assert_accessible(page)

    link = link_in(live_server.wait_for_mail(email, "export is ready"))
    assert re.match(re.escape(live_server.url) + r"/dashboard/privacy/export/download/\S+$", link)

    # Not signed in: the link asks for the login first.
    stranger = new_context().new_page()
    stranger.goto(link)
    expect(stranger).to_have_url(re.compile(r"/login\?next="))

    with page.expect_download() as info:
        try:
            page.goto(link)
        except PlaywrightError as err:  # a navigation that turns into a download
            assert "Download is starting" in str(err)
    download = info.value
    assert re.fullmatch(r"lumnar-workspace-export-\d{4}-\d\d-\d\d\.zip", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"README.txt", "schema.json", "manifest.json", "account.json", "workspace.json",
                "members.json", "messages.json"} <= names
        (account,) = json.loads(archive.read("account.json"))
        assert account["email"] == email
        assert set(json.loads(archive.read("schema.json"))["files"]) == names - {"README.txt", "schema.json"}

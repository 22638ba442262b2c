"""The ASGI root: what it compresses and what it leaves alone."""

from app.asgi import StaticGZip


def test_only_secret_free_responses_are_compressed():
    assert StaticGZip.wanted("/static/vendor/htmx.min.js")
    assert StaticGZip.wanted("/widget.js")
    assert StaticGZip.wanted("/widget/site_abc")
    # Pages with CSRF tokens, chat text or stream tickets are never compressed (BREACH).
    for path in ("/login", "/dashboard/inbox", "/widget/site_abc/chat", "/widget/site_abc/messages"):
        assert not StaticGZip.wanted(path)

"""The SSRF guard on automations' outgoing HTTP: only public addresses, no redirects followed,
answers cut at 1 MB, every request bounded in time."""

import gzip
import socket

import pytest

from app.automations import net
from tests.loopback import LoopbackServer, Recorder

ALLOW = pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def server():
    with Recorder() as srv:
        yield srv


# --- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    "127.0.0.2",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.10",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "[::1]",
    "[::]",
    "[fe80::1]",
    "[fc00::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[ff02::1]",
])
def test_non_public_address_literals_are_refused(ctx, host):
    url = f"http://{host}:8080/latest/meta-data/"
    assert net.literal_problem(url) == \
        "Automations may not call private, loopback or link-local addresses."
    with pytest.raises(net.BlockedAddress):
        net.request("GET", url)


def test_a_refused_request_never_reaches_the_loopback_server(ctx, server):
    with pytest.raises(net.BlockedAddress, match="private, loopback or link-local"):
        net.request("POST", server.url("/steal"), json={"a": 1})
    assert server.requests == []


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "api.localhost",
                                  "2130706433", "127.1", "0x7f.0.0.1", "017700000001"])
def test_names_and_shorthand_forms_of_loopback_are_refused(ctx, server, host):
    url = f"http://{host}:{server.port}/"
    with pytest.raises(net.BlockedAddress):
        net.request("GET", url)
    assert server.requests == []


def test_a_host_name_that_resolves_to_a_non_public_address_is_refused_after_resolving(ctx):
    """The check runs on what the name resolves to, not only on how the URL looks."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except socket.gaierror:
        pytest.skip("this machine's own name does not resolve here")
    if any(net.is_public(a) for a in addresses):
        pytest.skip("this machine's own name resolves to a public address")
    assert net.literal_problem(f"http://{name}/") is None  # nothing visible in the URL itself
    with pytest.raises(net.BlockedAddress, match="resolves to a non-public address"):
        net.request("GET", f"http://{name}:9/")


@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "must start with https:// or http://"),
    ("gopher://example.com/", "must start with https:// or http://"),
    ("ftp://example.com/", "must start with https:// or http://"),
    ("http:///no-host", "no host"),
    ("http://example.com:99999/", "valid URL"),
])
def test_other_schemes_and_broken_urls_are_refused(ctx, url, message):
    assert message in net.literal_problem(url)
    with pytest.raises(net.FlowFailed, match=message):
        net.request("GET", url)


def test_without_an_app_the_guard_stays_on(server):
    """No configuration to read means no exception to the rule."""
    with pytest.raises(net.BlockedAddress):
        net.request("GET", server.url())


@pytest.mark.parametrize("address, public", [
    ("93.184.215.14", True),
    ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
    ("8.8.8.8", True),
    ("::ffff:8.8.8.8", False),  # mapped form: not a global address itself
    ("127.0.0.1", False),
    ("fe80::1%eth0", False),
    ("not an address", False),
])
def test_is_public(address, public):
    assert net.is_public(address) is public


# --- allowed on loopback when the setting is on ------------------------------------------------


@ALLOW
def test_with_allow_private_the_request_goes_out_with_its_headers_and_body(ctx, server):
    response = net.request("POST", server.url("/items?x=1"), headers={"X-Test": "yes"},
                           json={"name": "Sam"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    [got] = server.requests
    assert got.method == "POST" and got.path == "/items?x=1"
    assert got.headers["X-Test"] == "yes"
    assert got.headers["Host"] == f"127.0.0.1:{server.port}"
    assert got.json() == {"name": "Sam"}
    assert str(response.request.url) == server.url("/items?x=1")


@ALLOW
def test_the_connection_goes_to_the_resolved_address_and_keeps_the_host_name(ctx, server):
    """`localhost` is resolved once, the socket opened to the address found (trying the next if
    one refuses), and the Host header still names the host."""
    response = net.request("GET", f"http://localhost:{server.port}/hello")
    assert response.status_code == 200
    [got] = server.requests
    assert got.headers["Host"] == f"localhost:{server.port}"


@ALLOW
def test_ipv6_loopback_works_when_allowed(ctx):
    try:
        srv = Recorder(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with srv:
        assert net.request("GET", srv.url("/six")).status_code == 200
        assert srv.requests[0].path == "/six"


@ALLOW
def test_redirects_are_not_followed(ctx):
    with Recorder(status=302, headers={"Location": "http://169.254.169.254/"}, body=b"") as srv:
        response = net.request("GET", srv.url("/go"))
    assert response.status_code == 302
    assert [r.path for r in srv.requests] == ["/go"]


@ALLOW
def test_environment_proxies_are_ignored(ctx, server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    assert net.request("GET", server.url("/direct")).status_code == 200
    assert server.requests[0].path == "/direct"


@ALLOW
def test_an_answer_over_one_megabyte_is_cut_there(ctx):
    with Recorder(body=b"x" * (3 * net.MAX_BODY), headers={"Content-Type": "text/plain"}) as srv:
        response = net.request("GET", srv.url())
    assert len(response.content) == net.MAX_BODY
    assert response.extensions[net.TRUNCATED] is True


@ALLOW
def test_a_small_answer_is_whole_and_compressed_answers_are_decoded(ctx):
    text = b'{"name": "' + b"a" * 5000 + b'"}'
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    with Recorder(body=gzip.compress(text), headers=headers) as srv:
        response = net.request("GET", srv.url())
    assert response.content == text
    assert response.json()["name"] == "a" * 5000
    assert response.extensions[net.TRUNCATED] is False


@ALLOW
def test_a_server_that_never_answers_times_out(ctx):
    class Silent(LoopbackServer):
        def answer(self, received):
            self.release.wait()  # held until the test ends
            return 200, {}, b""

    with Silent() as srv:
        with pytest.raises(net.FlowFailed, match="did not answer within"):
            net.request("GET", srv.url(), timeout=0.2)


@ALLOW
def test_a_closed_port_is_a_failed_attempt(ctx):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(net.FlowFailed, match="Could not connect"):
            net.request("GET", f"http://127.0.0.1:{port}/")


@ALLOW
def test_allow_private_lets_form_checks_pass_loopback(ctx):
    assert net.literal_problem("http://127.0.0.1:5000/") is None
    assert net.literal_problem("http://localhost/") is None
    assert net.literal_problem("ftp://127.0.0.1/") is not None

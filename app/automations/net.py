"""Outgoing HTTP for automations, guarded against SSRF: public addresses only, bounded in time and size."""

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx
from flask import current_app, has_app_context

MAX_BODY = 1024 * 1024
DEFAULT_TIMEOUT = 10.0
TRUNCATED = "lumnar_truncated"  # response.extensions[TRUNCATED] is True when the body was cut

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FlowFailed(Exception):
    """An attempt failed and may be tried again; the message is the error summary.
    (Flows know it as app.automations.flows.registry.FlowFailed.)"""


class BlockedAddress(FlowFailed):
    """The address is private, loopback, link-local or otherwise not on the public internet."""


def allow_private() -> bool:
    return bool(has_app_context() and current_app.config.get("AUTOMATIONS_ALLOW_PRIVATE"))


def is_public(address: str) -> bool:
    """True only for a globally routable unicast address, looking inside IPv6 forms that carry
    an IPv4 address (::ffff:127.0.0.1, 64:ff9b::a00:1, 2002:7f00:1::, Teredo)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6:
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified
                                 or ip.is_loopback or ip.is_link_local or ip.is_private)


def literal_problem(url: str) -> str | None:
    """Why `url` may not be used, judged without DNS (for checking a form): not http(s), no
    host, or a host that is literally a non-public address or a localhost name."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "Enter a valid URL."
    if parts.scheme not in ("http", "https"):
        return "The URL must start with https:// or http://."
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "The URL has no host name."
    if allow_private():
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "Automations may not call this machine (localhost)."
    try:
        address = str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        try:  # the old shorthand forms the resolver also takes: 127.1, 2130706433, 0x7f.0.0.1
            address = socket.inet_ntoa(socket.inet_aton(host))
        except (OSError, UnicodeError):
            return None  # a name: checked again, resolved, when the request is made
    if not is_public(address):
        return "Automations may not call private, loopback or link-local addresses."
    return None


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FlowFailed(f"Could not resolve {host}: {exc}") from None
    seen = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def resolve(url: str) -> tuple[httpx.URL, list[str]]:
    """The URL and the addresses its host resolves to, refusing the lot if any one of them is
    not public (a name with one public and one private address is still a way in)."""
    problem = literal_problem(url)
    if problem:
        raise BlockedAddress(problem) if "may not" in problem else FlowFailed(problem)
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FlowFailed(f"Invalid URL: {exc}") from None
    addresses = _addresses(target.host, target.port or (443 if target.scheme == "https" else 80))
    if not allow_private():
        bad = [a for a in addresses if not is_public(a)]
        if bad or not addresses:
            raise BlockedAddress(f"Refused: {target.host} resolves to a non-public address "
                                 f"({', '.join(bad) or 'none'}).")
    return target, addresses


def request(method: str, url: str, *, headers=None, json=None, content=None,
            timeout: float = DEFAULT_TIMEOUT) -> httpx.Response:
    """Send one request to a public address and return the response with at most 1 MB of body.

    The host is resolved once and the connection goes to that checked address (the URL is
    rewritten to the IP, the Host header and TLS server name keep the real name), so a DNS
    answer that changes between check and connect cannot point us inside. Redirects are not
    followed: the flow sees the 3xx. Proxies from the environment are ignored."""
    target, addresses = resolve(url)
    host_header = target.netloc.decode("ascii")
    sent_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
    sent_headers["Host"] = host_header
    extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    deadline = time.monotonic() + timeout * 3  # a server dripping bytes must end too
    last_error = None
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for address in addresses:
            ip_url = target.copy_with(host=address)
            try:
                req = client.build_request(method.upper(), ip_url, headers=sent_headers,
                                           json=json, content=content, extensions=extensions)
            except (ValueError, TypeError, httpx.InvalidURL) as exc:
                raise FlowFailed(f"Could not build the request: {exc}") from None
            try:
                return _read_capped(client, req, target, deadline)
            except httpx.ConnectError as exc:
                last_error = exc  # try the host's next address
            except httpx.TimeoutException:
                raise FlowFailed(f"{target.host} did not answer within {timeout:g} s.") from None
            except httpx.HTTPError as exc:
                raise FlowFailed(f"Request to {target.host} failed: {exc}") from None
    raise FlowFailed(f"Could not connect to {target.host}: {last_error}")


def _read_capped(client: httpx.Client, req: httpx.Request, target: httpx.URL,
                 deadline: float) -> httpx.Response:
    response = client.send(req, stream=True)
    try:
        body, cut = bytearray(), False
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_BODY:
                del body[MAX_BODY:]
                cut = True
                break
            if time.monotonic() > deadline:
                raise FlowFailed(f"{target.host} took too long to send its answer.")
    finally:
        response.close()
    # The body is already decoded: drop the headers that would make httpx decode it again.
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    # The request as the flow meant it (real host name), for messages and logs.
    shown = httpx.Request(req.method, target, headers=req.headers)
    return httpx.Response(response.status_code, headers=headers, content=bytes(body),
                          request=shown, extensions={TRUNCATED: cut})

"""Fetch a user-supplied URL without letting it reach internal services (SSRF).

Every hop, the first request and each redirect, goes through the same checks: scheme, userinfo,
port and host; then the host name is resolved once, every resolved address is checked, and the
connection goes to a checked address while the Host header and TLS SNI keep the name. Nothing
resolves the name again between the check and the connect, so a DNS answer that changes
(rebinding) cannot move the connection somewhere else.

No Django here: the caller passes a `FetchPolicy` built from its settings.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx

logger = logging.getLogger(__name__)

MiB = 1024 * 1024

FetchErrorCode = Literal["FETCH_BLOCKED", "FETCH_FAILED", "TOO_LARGE", "TIMEOUT"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 8192

# Every IANA special-purpose IPv4 block. `is_global` alone is not enough: Python 3.11 calls
# multicast and 192.0.0.192 (Oracle Cloud metadata) global.
_BLOCKED_IPV4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network", includes the unspecified address
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (Alibaba Cloud metadata lives here)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local (cloud metadata at 169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
    )
)
# IPv6 is allowed only inside global unicast, minus these. Loopback, IPv4-mapped and NAT64
# addresses sit outside 2000::/3 and are handled before this check.
_GLOBAL_UNICAST_IPV6 = ipaddress.IPv6Network("2000::/3")
_BLOCKED_IPV6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_NAT64_IPV6 = ipaddress.IPv6Network("64:ff9b::/96")

# Names that only mean something inside a network. Resolution is checked as well; these are
# refused by name so that a resolver returning public addresses for them changes nothing.
_INTERNAL_SUFFIXES = (".internal", ".local", ".localdomain", ".home.arpa")
_INTERNAL_NAMES = frozenset({"metadata.google.internal", "metadata.goog"})

# A host whose last label is a number is an IPv4 address in some encoding (WHATWG URL rules).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_NAME_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_DIGITS = {16: re.compile(r"[0-9a-f]*"), 8: re.compile(r"[0-7]*"), 10: re.compile(r"[0-9]+")}


@dataclass(frozen=True)
class FetchPolicy:
    allow_loopback: bool = False
    allowed_ports: frozenset[int] = frozenset({80, 443})
    max_bytes: int = 20 * MiB
    timeout_seconds: float = 30.0  # for the whole fetch, all redirects included
    max_redirects: int = 5
    user_agent: str = "Quire/1.0 (research notebook fetcher)"

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout_seconds <= 0 or self.max_redirects < 0:
            raise ValueError(f"Invalid fetch policy: {self!r}")


class FetchError(Exception):
    def __init__(self, code: FetchErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: FetchErrorCode = code
        self.message = message


@dataclass(frozen=True)
class Fetched:
    url: str  # the URL that answered, after redirects
    status: int
    content_type: str  # the Content-Type header as sent, "" when missing
    data: bytes
    redirects: list[str]  # each URL that answered with a redirect, in order


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # lower-case ASCII name without a trailing dot, or the address in canonical form
    port: int
    address: IPAddress | None  # set when the URL names an address rather than a host name


def validate_url(url: str, policy: FetchPolicy) -> None:
    """Refuse a URL that can never be fetched, without touching the network.

    A host name that passes can still be refused by `fetch` once it is resolved.
    """
    _check_url(url, policy)


def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET `url`, following up to `policy.max_redirects` redirects, each hop checked afresh.

    Raises FetchError: FETCH_BLOCKED (refused by policy, nothing sent), FETCH_FAILED (DNS,
    connection, TLS, protocol or non-2xx status), TOO_LARGE or TIMEOUT (whole fetch).
    """
    deadline = time.monotonic() + policy.timeout_seconds
    with _Watchdog(deadline) as watchdog:
        return _fetch(url, policy, deadline, watchdog)


def _fetch(url: str, policy: FetchPolicy, deadline: float, watchdog: _Watchdog) -> Fetched:
    redirects: list[str] = []
    current = url
    while True:
        try:
            target = _check_url(current, policy)
            addresses = _resolve(target, policy)
        except FetchError as exc:
            if redirects and exc.code == "FETCH_BLOCKED":
                raise _blocked(f"A redirect was refused. {exc.message}") from None
            raise
        with _network_errors(deadline), _exchange(target, addresses, policy, deadline, watchdog) as response:
            location = response.headers.get("location")
            if response.status_code in _REDIRECT_STATUSES and location:
                if len(redirects) >= policy.max_redirects:
                    raise FetchError("FETCH_FAILED", f"The page redirected more than {policy.max_redirects} times.")
                redirects.append(str(target.url))
                try:
                    current = str(target.url.join(location))
                except httpx.InvalidURL:
                    raise _blocked("A redirect was refused. The URL is not valid.") from None
                continue
            if not 200 <= response.status_code < 300:
                raise FetchError("FETCH_FAILED", f"The server answered with HTTP status {response.status_code}.")
            data = _read_body(response, policy, deadline)
            return Fetched(
                url=str(target.url),
                status=response.status_code,
                content_type=response.headers.get("content-type", ""),
                data=data,
                redirects=redirects,
            )


def _check_url(url: str, policy: FetchPolicy) -> _Target:
    if len(url) > _MAX_URL_LENGTH:
        raise _blocked("The URL is too long.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise _blocked("The URL is not valid.") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise _blocked("Only http and https URLs can be fetched.")
    if parsed.userinfo:
        raise _blocked("URLs with a user name or password cannot be fetched.")
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[parsed.scheme]
    if port not in policy.allowed_ports:
        raise _blocked(f"Port {port} is not allowed.")
    host, address = _parse_host(parsed.raw_host.decode("ascii", errors="replace"))
    if address is None:
        _check_name(host, policy)
    elif not _address_allowed(address, allow_loopback=policy.allow_loopback):
        raise _blocked("The URL points to a private, local or reserved address.")
    return _Target(url=parsed, host=host, port=port, address=address)


def _parse_host(raw_host: str) -> tuple[str, IPAddress | None]:
    host = raw_host.lower()
    if ":" in host:  # httpx has already stripped the brackets of an IPv6 literal
        try:
            address: IPAddress = ipaddress.IPv6Address(host)
        except ValueError:
            raise _blocked("The host name is not valid.") from None
        return str(address), address
    host = host.removesuffix(".")
    if not host:
        raise _blocked("The URL has no host.")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        ipv4 = _parse_ipv4(labels)
        if ipv4 is None:
            raise _blocked("The host name is not valid.")
        return str(ipv4), ipv4
    if len(host) > 253 or not all(_NAME_LABEL.fullmatch(label) for label in labels):
        raise _blocked("The host name is not valid.")
    return host, None


def _parse_ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    """Read an IPv4 address the way inet_aton() does: 1 to 4 parts, each decimal, 0x-hex or
    0-octal, the last part filling the remaining bytes (127.1, 2130706433, 0x7f.1, 0177.0.0.1)."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if label.startswith("0x"):
            base, digits = 16, label[2:]
        elif len(label) > 1 and label.startswith("0"):
            base, digits = 8, label[1:]
        else:
            base, digits = 10, label
        if not _DIGITS[base].fullmatch(digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last + sum(number << (8 * (3 - index)) for index, number in enumerate(head))
    return ipaddress.IPv4Address(value)


def _check_name(host: str, policy: FetchPolicy) -> None:
    if host == "localhost" or host.endswith(".localhost"):
        if policy.allow_loopback:
            return  # still resolved and checked address by address
        raise _blocked("Local host names cannot be fetched.")
    if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
        raise _blocked("Internal host names cannot be fetched.")
    if "." not in host:
        # A bare name is completed by the resolver's search domains, i.e. the local network.
        raise _blocked("The host name must be fully qualified, like example.com.")


def _address_allowed(address: IPAddress, *, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _address_allowed(address.ipv4_mapped, allow_loopback=allow_loopback)
        # Translated addresses reach the embedded IPv4 through a gateway, never the local
        # machine, so the embedded address must be public even when loopback is allowed.
        if address in _NAT64_IPV6:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
            return _address_allowed(embedded, allow_loopback=False)
        if address.sixtofour is not None and not _address_allowed(address.sixtofour, allow_loopback=False):
            return False
    if address.is_loopback:
        return allow_loopback
    if isinstance(address, ipaddress.IPv4Address):
        blocked = any(address in network for network in _BLOCKED_IPV4)
    else:
        blocked = address not in _GLOBAL_UNICAST_IPV6 or any(address in network for network in _BLOCKED_IPV6)
    return not blocked and address.is_global


def _resolve(target: _Target, policy: FetchPolicy) -> list[IPAddress]:
    if target.address is not None:
        return [target.address]
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError("FETCH_FAILED", "The host name could not be resolved.") from exc
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            address = ipaddress.IPv4Address("0.0.0.0")  # unreadable answer: fail closed
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError("FETCH_FAILED", "The host name could not be resolved.")
    # One bad answer refuses the host, whichever address a connection would have picked.
    if not all(_address_allowed(address, allow_loopback=policy.allow_loopback) for address in addresses):
        raise _blocked("The host name resolves to a private, local or reserved address.")
    return addresses


@contextmanager
def _exchange(
    target: _Target, addresses: list[IPAddress], policy: FetchPolicy, deadline: float, watchdog: _Watchdog
) -> Iterator[httpx.Response]:
    """Send one GET to a vetted address and yield the response with its body unread."""
    headers = {
        "Host": _host_header(target),
        "User-Agent": policy.user_agent,
        "Accept": "*/*",
        # Compressed bodies are decoded here with a bound (see _read_body), not by httpx.
        "Accept-Encoding": "identity",
    }
    extensions: dict[str, Any] = {"trace": watchdog.trace}
    if target.address is None:
        # The URL carries the address, so certificate checks need the name spelled out.
        extensions["sni_hostname"] = target.host
    # A fresh client per hop: no cookies or pooled connections carried to another host. No proxy
    # from the environment either: it would connect to the name, not to the vetted address.
    with httpx.Client(trust_env=False, follow_redirects=False) as client:
        failure: httpx.ConnectError | None = None
        for address in addresses:
            request = client.build_request(
                "GET",
                target.url.copy_with(host=str(address)),
                headers=headers,
                extensions=extensions,
                timeout=httpx.Timeout(_remaining(deadline)),
            )
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                logger.info("Could not connect to %s (%s): %s", target.host, address, exc)
                failure = exc
                continue
            try:
                yield response
            finally:
                response.close()
            return
        assert failure is not None
        raise failure


def _host_header(target: _Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port == _DEFAULT_PORTS[target.url.scheme]:
        return host
    return f"{host}:{target.port}"


class _Watchdog:
    """Shuts down every socket of a fetch at its deadline, whatever the exchange is doing.

    httpx timeouts apply to each read, so a server that trickles its headers or body a byte at a
    time never trips them. httpcore reports each new connection to the `trace` callback; the
    shutdown wakes a reader blocked in recv(), which then sees end of stream.
    """

    def __init__(self, deadline: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        sock = info["return_value"].get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self._expired:
                    _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The base-class method, not SSLSocket.shutdown(): that one also drops the TLS object that
    # the reading thread is using. A socket closed meanwhile has no descriptor left to hit.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _read_body(response: httpx.Response, policy: FetchPolicy, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy)
    inflater = _inflater_for(response.headers.get("content-encoding", ""))
    body = bytearray()
    for chunk in response.iter_raw():
        if inflater is None:
            body += chunk
        else:
            _inflate(inflater, chunk, body, policy.max_bytes)
        if len(body) > policy.max_bytes:
            raise _too_large(policy)
        if time.monotonic() >= deadline:
            raise _timeout()
    # Past the deadline, end of stream may be the watchdog's doing, not the server's: a body
    # without a Content-Length would otherwise pass for complete.
    if time.monotonic() >= deadline:
        raise _timeout()
    if inflater is not None:
        try:
            body += inflater.flush()
        except zlib.error:
            raise FetchError("FETCH_FAILED", "The page's compressed content is corrupt.") from None
        if len(body) > policy.max_bytes:
            raise _too_large(policy)
    return bytes(body)


def _inflater_for(content_encoding: str) -> zlib._Decompress | None:
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"], ["deflate"]):
        return zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    raise FetchError("FETCH_FAILED", "The page uses a compression this fetcher does not support.")


def _inflate(inflater: zlib._Decompress, chunk: bytes, body: bytearray, max_bytes: int) -> None:
    # Inflate at most one byte past the cap per step: a few kilobytes of gzip can hold gigabytes.
    pending = chunk
    try:
        while pending:
            body += inflater.decompress(pending, max_bytes + 1 - len(body))
            if len(body) > max_bytes:
                return
            pending = inflater.unconsumed_tail
    except zlib.error:
        raise FetchError("FETCH_FAILED", "The page's compressed content is corrupt.") from None


@contextmanager
def _network_errors(deadline: float) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise _timeout() from exc
    except httpx.HTTPError as exc:
        if time.monotonic() >= deadline:  # the watchdog cut the connection
            raise _timeout() from exc
        logger.info("Fetch failed: %r", exc)
        raise FetchError("FETCH_FAILED", "The connection to the host failed.") from exc


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timeout()
    return remaining


def _blocked(message: str) -> FetchError:
    return FetchError("FETCH_BLOCKED", message)


def _too_large(policy: FetchPolicy) -> FetchError:
    return FetchError("TOO_LARGE", f"The page is larger than the limit of {policy.max_bytes:,} bytes.")


def _timeout() -> FetchError:
    return FetchError("TIMEOUT", "The page took too long to fetch.")

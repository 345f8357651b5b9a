"""The URL fetcher against hostile URLs and hostile servers, all on 127.0.0.1.

A canary server listens on loopback and counts connections: every hostile URL that could reach
it (any spelling of 127.0.0.1, 0.0.0.0, names resolving there) uses its port, and the port is
allowed by the policy, so only the address checks stand between the fetcher and the canary.
DNS is faked for the whole module: a name the test does not map fails to resolve, so nothing
leaves the machine.
"""

from __future__ import annotations

import datetime
import gzip
import http.server
import ipaddress
import socket
import socketserver
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notebooks.fetch import FetchError, FetchPolicy, MiB, fetch, validate_url

HUGE_BYTES = 100 * MiB
PUBLIC_IP = "93.184.216.34"


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.stop = threading.Event()  # wakes handlers that wait, at teardown

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup of the address; skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def start(self, status: int, content_type: str = "text/plain", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()


class Canary(QuietServer):
    def __init__(self) -> None:
        super().__init__(CanaryHandler)
        self.connections = 0
        self._lock = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            self.connections += 1
        return True


class CanaryHandler(Handler):
    def do_GET(self) -> None:
        self.start(200)
        self.wfile.write(b"canary reached")


class Web(QuietServer):
    def __init__(self) -> None:
        super().__init__(WebHandler)
        self.huge_sent = 0
        self.huge_done = threading.Event()
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = bytes(MiB)
        self.gzip_bomb = b"".join(compressor.compress(zeros) for _ in range(100)) + compressor.flush()


class WebHandler(Handler):
    server: Web

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        route, _, arg = url.path.strip("/").partition("/")
        query = parse_qs(url.query)
        if route == "hello":
            self.start(200, "text/plain; charset=utf-8")
            self.wfile.write(b"hello quire")
        elif route == "host":
            self.start(200)
            self.wfile.write(self.headers["Host"].encode())
        elif route == "redirect":
            # /redirect/<n>?then=<url>: n more hops, then to <url> or to a 200 page
            hops = int(arg)
            if hops > 0:
                then = f"?then={quote(query['then'][0], safe='')}" if "then" in query else ""
                self.start(302, Location=f"/redirect/{hops - 1}{then}")
            elif "then" in query:
                self.start(302, Location=query["then"][0])
            else:
                self.start(200)
                self.wfile.write(b"done")
        elif route == "status":
            self.start(int(arg))
            self.wfile.write(b"nope")
        elif route == "huge":
            self.start(200, "application/octet-stream")
            chunk = b"x" * 65536
            try:
                for _ in range(HUGE_BYTES // len(chunk)):
                    self.wfile.write(chunk)
                    self.server.huge_sent += len(chunk)
            except OSError:
                pass  # the client hung up, as it should
            finally:
                self.server.huge_done.set()
        elif route == "declared-huge":
            self.start(200, Content_Length=str(HUGE_BYTES))
        elif route == "gzip":
            body = gzip.compress(b"hello gzip")
            self.start(200, Content_Encoding="gzip", Content_Length=str(len(body)))
            self.wfile.write(body)
        elif route == "gzip-bomb":
            self.start(200, Content_Encoding="gzip", Content_Length=str(len(self.server.gzip_bomb)))
            self._write_quietly(self.server.gzip_bomb)
        elif route == "brotli":
            self.start(200, Content_Encoding="br")
            self.wfile.write(b"\x0b\x02\x80hello\x03")
        elif route == "drip":
            # one byte a second, for at most 30 seconds
            self.start(200)
            for _ in range(30):
                if not self._write_quietly(b"x") or self.server.stop.wait(1.0):
                    break
        elif route == "drip-headers":
            # a status line, then a header one byte every 0.3 seconds, for at most 30 bytes
            self._write_quietly(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            for _ in range(30):
                if not self._write_quietly(b"x") or self.server.stop.wait(0.3):
                    return
            self._write_quietly(b"\r\n\r\n")
        elif route == "drip-then-stall":
            self.start(200)
            for _ in range(3):
                if not self._write_quietly(b"x") or self.server.stop.wait(0.5):
                    return
            self.server.stop.wait(10.0)
        else:
            self.start(404)

    def _write_quietly(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
        except OSError:
            return False
        return True


class FakeDNS:
    """socket.getaddrinfo for the module under test: mapped names only, numeric hosts passed on."""

    def __init__(self) -> None:
        self._real = socket.getaddrinfo
        self._answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def map(self, name: str, *answers: list[str]) -> None:
        """Successive lookups of `name` get successive answers; the last one repeats."""
        self._answers[name] = list(answers)

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            return self._real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        self.lookups.append(name)
        answers = self._answers.get(name)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
            for a in addresses
        ]


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    yield from _serve(Canary())


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    yield from _serve(Web())


def _serve(server: Canary | Web) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    fake.map("loopback.test", ["127.0.0.1"])
    fake.map("v6loopback.test", ["::1"])
    fake.map("mapped.test", ["::ffff:127.0.0.1"])
    fake.map("zero.test", ["0.0.0.0"])
    fake.map("private.test", ["10.1.2.3"])
    fake.map("mixed.test", [PUBLIC_IP, "127.0.0.1"])
    fake.map("metadata-alias.test", ["169.254.169.254"])
    fake.map("ula.test", ["fd12:3456::1"])
    fake.map("nat64.test", ["64:ff9b::a9fe:a9fe"])
    fake.map("127.0.0.1.nip.io", ["127.0.0.1"])
    # notebooks.fetch calls socket.getaddrinfo through the socket module: patch it there.
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


def policy(*ports: int, **overrides: Any) -> FetchPolicy:
    return FetchPolicy(**{"allowed_ports": frozenset({80, 443, *ports}), "timeout_seconds": 5.0, **overrides})


def fetch_error(url: str, fetch_policy: FetchPolicy) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, fetch_policy)
    return caught.value


# {p} is the canary's port, which the policy allows: these are refused for their address.
HOSTILE_WITHOUT_DNS = [
    # loopback, spelled every way
    "http://127.0.0.1:{p}/",
    "http://127.0.0.2:{p}/",
    "http://localhost:{p}/",
    "http://LocalHost.:{p}/",
    "http://api.localhost:{p}/",
    "http://2130706433:{p}/",
    "http://0x7f000001:{p}/",
    "http://0X7F.0.0.1:{p}/",
    "http://0x7f.0x00.0x00.0x01:{p}/",
    "http://0177.0.0.1:{p}/",
    "http://0177.0000.0000.0001:{p}/",
    "http://017700000001:{p}/",
    "http://127.1:{p}/",
    "http://127.0.1:{p}/",
    "http://127.0.0.1.:{p}/",
    "http://127%2E0%2E0%2E1:{p}/",
    "http://127\u30020\u30020\u30021:{p}/",
    "http://[::1]:{p}/",
    "http://[0:0:0:0:0:0:0:1]:{p}/",
    "http://[::ffff:127.0.0.1]:{p}/",
    "http://[::FFFF:7f00:1]:{p}/",
    "http://[::127.0.0.1]:{p}/",
    "http://[64:ff9b::127.0.0.1]:{p}/",
    "http://[64:ff9b::7f00:1]:{p}/",
    "http://[2002:7f00:1::]:{p}/",
    # unspecified: connecting to it reaches loopback on Linux
    "http://0.0.0.0:{p}/",
    "http://0:{p}/",
    "http://[::]:{p}/",
    "http://[::ffff:0.0.0.0]:{p}/",
    # userinfo and parser confusion
    "http://example.com@127.0.0.1:{p}/",
    "http://example.com:80@127.0.0.1:{p}/",
    "http://user:pass@example.com/",
    "http://127.0.0.1:{p}#@example.com/",
    "http://127.0.0.1:{p}\\@example.com/",
    "http://\u2460\u2461\u2466.0.0.1:{p}/",
    "http://127.0.0.09:{p}/",
    "http://1.2.3.4.5/",
    # other schemes
    "file:///etc/passwd",
    "gopher://127.0.0.1:{p}/_GET%20/",
    "ftp://127.0.0.1:{p}/",
    "dict://127.0.0.1:{p}/info",
    "ldap://127.0.0.1:{p}/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "//127.0.0.1:{p}/",
    # ports outside the policy
    "http://example.com:22/",
    "http://example.com:6379/",
    "https://example.com:0/",
    "http://example.com:99999/",
    # private, link-local, metadata and other special ranges
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.goog/",
    "http://100.100.100.200/latest/meta-data/",
    "http://192.0.0.192/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[ff02::1]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://[2001:db8::1]/",
    "http://intranet/",
    "http://printer.local/",
]
# Refused only once resolved (the fake DNS above).
HOSTILE_BY_DNS = [
    "http://loopback.test:{p}/",
    "http://v6loopback.test:{p}/",
    "http://mapped.test:{p}/",
    "http://zero.test:{p}/",
    "http://mixed.test:{p}/",
    "http://127.0.0.1.nip.io:{p}/",
    "http://private.test/",
    "http://metadata-alias.test/",
    "http://ula.test/",
    "http://nat64.test/",
]


@pytest.mark.parametrize("template", HOSTILE_WITHOUT_DNS + HOSTILE_BY_DNS)
def test_it_refuses_hostile_urls_without_connecting(template: str, canary: Canary) -> None:
    error = fetch_error(template.format(p=canary.port), policy(canary.port))

    assert error.code == "FETCH_BLOCKED", error.message
    assert canary.connections == 0


@pytest.mark.parametrize("template", HOSTILE_WITHOUT_DNS)
def test_it_refuses_hostile_urls_at_request_time(template: str, canary: Canary, dns: FakeDNS) -> None:
    with pytest.raises(FetchError) as caught:
        validate_url(template.format(p=canary.port), policy(canary.port))

    assert caught.value.code == "FETCH_BLOCKED"
    assert dns.lookups == []


def test_it_keeps_resolved_addresses_out_of_messages(canary: Canary) -> None:
    for url in ("http://private.test/", f"http://mixed.test:{canary.port}/"):
        error = fetch_error(url, policy(canary.port))

        assert error.code == "FETCH_BLOCKED"
        assert "10.1.2.3" not in error.message
        assert "127.0.0.1" not in error.message
        assert PUBLIC_IP not in error.message


def test_it_accepts_public_urls_at_request_time() -> None:
    for url in (
        "https://example.com/a/b?c=d#e",
        "HTTP://Example.COM./",
        f"http://{PUBLIC_IP}/",
        "http://1572395042/",  # 93.184.216.34 as one number: odd, but public
        "http://[2606:4700:4700::1111]/",
        "http://[64:ff9b::5db8:d822]/",  # NAT64 of a public address
        "http://b\u00fccher.de/",
    ):
        validate_url(url, FetchPolicy())


def test_it_allows_loopback_and_nothing_else_when_the_policy_says_so(canary: Canary) -> None:
    loopback = policy(canary.port, allow_loopback=True)

    validate_url(f"http://127.0.0.1:{canary.port}/", loopback)
    validate_url(f"http://0x7f000001:{canary.port}/", loopback)
    validate_url(f"http://[::1]:{canary.port}/", loopback)
    for url in (
        f"http://0.0.0.0:{canary.port}/",
        f"http://[64:ff9b::127.0.0.1]:{canary.port}/",
        "http://10.0.0.1/",
        "http://169.254.169.254/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/",
    ):
        with pytest.raises(FetchError):
            validate_url(url, loopback)


def test_it_fetches_a_permitted_url(web: Web) -> None:
    result = fetch(f"http://127.0.0.1:{web.port}/hello", policy(web.port, allow_loopback=True))

    assert result.status == 200
    assert result.data == b"hello quire"
    assert result.content_type == "text/plain; charset=utf-8"
    assert result.url == f"http://127.0.0.1:{web.port}/hello"
    assert result.redirects == []


def test_it_connects_to_the_vetted_address_and_sends_the_original_host(web: Web, dns: FakeDNS) -> None:
    # The second answer would be refused; it is never asked for.
    dns.map("pinned.test", ["127.0.0.1"], ["10.9.9.9"])

    result = fetch(f"http://pinned.test:{web.port}/host", policy(web.port, allow_loopback=True))

    assert result.data == f"pinned.test:{web.port}".encode()
    assert dns.lookups.count("pinned.test") == 1


def test_it_never_resolves_a_name_twice_so_rebinding_cannot_reach_loopback(
    canary: Canary, dns: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns.map("rebind.test", [PUBLIC_IP], ["127.0.0.1"])
    connects: list[tuple[str, int]] = []

    def connect_tcp(self: httpcore.SyncBackend, host: str, port: int, **kwargs: Any) -> httpcore.NetworkStream:
        connects.append((host, port))
        raise httpcore.ConnectError("the test allows no traffic off this machine")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)

    error = fetch_error(f"http://rebind.test:{canary.port}/", policy(canary.port))

    assert error.code == "FETCH_FAILED"
    assert connects == [(PUBLIC_IP, canary.port)]
    assert dns.lookups.count("rebind.test") == 1
    assert canary.connections == 0


def test_it_sends_the_original_host_name_as_tls_sni(dns: FakeDNS, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_names: list[str | None] = []

    def record_server_name(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        server_names.append(server_name)

    context.sni_callback = record_server_name

    def handshake_once(listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True):
                pass
        except OSError:
            pass  # the client refuses the self-signed certificate, as it should

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(5)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=handshake_once, args=(listener,), daemon=True)
        thread.start()
        dns.map("tls.test", ["127.0.0.1"])

        error = fetch_error(f"https://tls.test:{port}/", policy(port, allow_loopback=True))

        thread.join(timeout=5)
    assert error.code == "FETCH_FAILED"
    assert server_names == ["tls.test"]


def test_it_follows_redirects_within_the_limit(web: Web) -> None:
    base = f"http://127.0.0.1:{web.port}"

    result = fetch(f"{base}/redirect/5", policy(web.port, allow_loopback=True))

    assert result.data == b"done"
    assert result.url == f"{base}/redirect/0"
    assert result.redirects == [f"{base}/redirect/{n}" for n in (5, 4, 3, 2, 1)]


def test_it_refuses_a_sixth_redirect(web: Web) -> None:
    error = fetch_error(f"http://127.0.0.1:{web.port}/redirect/6", policy(web.port, allow_loopback=True))

    assert error.code == "FETCH_FAILED"
    assert "redirected more than 5 times" in error.message


REDIRECT_TARGETS = [
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://0.0.0.0:{p}/",
    "http://0:{p}/",
    "//0.0.0.0:{p}/",
    "http://[::]:{p}/",
    "http://[::ffff:0.0.0.0]:{p}/",
    "http://[64:ff9b::127.0.0.1]:{p}/",
    "http://zero.test:{p}/",
    "http://private.test/",
    "http://user:pw@127.0.0.1:{p}/",
    "http://127.0.0.1:22/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{p}/_SET",
]


@pytest.mark.parametrize("template", REDIRECT_TARGETS)
def test_it_refuses_redirects_to_blocked_urls_without_connecting(template: str, web: Web, canary: Canary) -> None:
    target = quote(template.format(p=canary.port), safe="")
    url = f"http://127.0.0.1:{web.port}/redirect/0?then={target}"

    error = fetch_error(url, policy(web.port, canary.port, allow_loopback=True))

    assert error.code == "FETCH_BLOCKED", error.message
    assert error.message.startswith("A redirect was refused.")
    assert canary.connections == 0


def test_it_refuses_a_redirect_chain_that_ends_on_a_metadata_address(web: Web) -> None:
    target = quote("http://169.254.169.254/latest/meta-data/", safe="")
    url = f"http://127.0.0.1:{web.port}/redirect/3?then={target}"

    error = fetch_error(url, policy(web.port, allow_loopback=True))

    assert error.code == "FETCH_BLOCKED"


def test_it_reports_the_status_of_a_failed_response(web: Web) -> None:
    for status in (404, 500):
        error = fetch_error(f"http://127.0.0.1:{web.port}/status/{status}", policy(web.port, allow_loopback=True))

        assert error.code == "FETCH_FAILED"
        assert str(status) in error.message


def test_it_fails_cleanly_when_a_name_does_not_resolve() -> None:
    error = fetch_error("http://nowhere.test/", FetchPolicy())

    assert error.code == "FETCH_FAILED"


def test_it_fails_cleanly_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the fetch

    error = fetch_error(f"http://127.0.0.1:{port}/", policy(port, allow_loopback=True))

    assert error.code == "FETCH_FAILED"


def test_it_stops_reading_at_the_size_cap(web: Web) -> None:
    started = time.monotonic()

    error = fetch_error(f"http://127.0.0.1:{web.port}/huge", policy(web.port, allow_loopback=True, max_bytes=MiB))

    assert error.code == "TOO_LARGE"
    assert time.monotonic() - started < 3
    assert web.huge_done.wait(5)
    assert web.huge_sent < HUGE_BYTES // 4  # the server was cut off early, socket buffers aside


def test_it_refuses_a_body_whose_declared_length_is_over_the_cap(web: Web) -> None:
    error = fetch_error(
        f"http://127.0.0.1:{web.port}/declared-huge", policy(web.port, allow_loopback=True, max_bytes=MiB)
    )

    assert error.code == "TOO_LARGE"


def test_it_decodes_gzip_bodies(web: Web) -> None:
    result = fetch(f"http://127.0.0.1:{web.port}/gzip", policy(web.port, allow_loopback=True))

    assert result.data == b"hello gzip"


def test_it_stops_inflating_a_gzip_bomb_at_the_size_cap(web: Web) -> None:
    # About 100 KB on the wire, 100 MB inflated.
    assert len(web.gzip_bomb) < 2 * MiB
    started = time.monotonic()

    error = fetch_error(f"http://127.0.0.1:{web.port}/gzip-bomb", policy(web.port, allow_loopback=True, max_bytes=MiB))

    assert error.code == "TOO_LARGE"
    assert time.monotonic() - started < 3


def test_it_refuses_an_unsupported_content_encoding(web: Web) -> None:
    error = fetch_error(f"http://127.0.0.1:{web.port}/brotli", policy(web.port, allow_loopback=True))

    assert error.code == "FETCH_FAILED"


def test_it_times_out_a_slow_drip_server(web: Web) -> None:
    started = time.monotonic()

    error = fetch_error(f"http://127.0.0.1:{web.port}/drip", policy(web.port, allow_loopback=True, timeout_seconds=2.5))

    assert error.code == "TIMEOUT"
    assert time.monotonic() - started < 3.5


def test_it_times_out_a_server_that_drips_its_headers(web: Web) -> None:
    started = time.monotonic()

    error = fetch_error(
        f"http://127.0.0.1:{web.port}/drip-headers", policy(web.port, allow_loopback=True, timeout_seconds=1.5)
    )

    assert error.code == "TIMEOUT"
    assert time.monotonic() - started < 2.5


def test_it_times_out_at_the_deadline_when_a_server_stalls_after_dripping(web: Web) -> None:
    # Bytes at 0, 0.5 and 1 s, then silence: a per-read timeout alone would end at about 3 s.
    started = time.monotonic()

    error = fetch_error(
        f"http://127.0.0.1:{web.port}/drip-then-stall", policy(web.port, allow_loopback=True, timeout_seconds=2.0)
    )

    assert error.code == "TIMEOUT"
    assert time.monotonic() - started < 2.6


def test_it_refuses_a_policy_without_limits() -> None:
    for overrides in ({"max_bytes": 0}, {"timeout_seconds": 0}, {"max_redirects": -1}):
        with pytest.raises(ValueError):
            FetchPolicy(**overrides)  # type: ignore[arg-type]

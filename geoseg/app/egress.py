"""Outbound connections of the app: public addresses only, enforced by a small forward proxy.

Checking a URL's host before GDAL reads it is not enough: GDAL follows HTTP redirects on its own
and resolves the host again (a second DNS answer may differ), and it has no setting that stops
either. So the app hands GDAL a proxy (the ``proxy=`` option of a ``/vsicurl?`` path, which
every thread reading that path uses) and the proxy connects only to addresses it has resolved and
checked itself, redirect by redirect.

The proxy runs in a child process: GDAL holds the GIL while it opens a file, which would starve a
proxy thread in the app's own process. It answers ``CONNECT`` (https) and plain ``GET``/``HEAD``
(http) from clients that know its token, and exits when the app closes its stdin. This module
uses the standard library only, so the child starts fast.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import os
import selectors
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

__all__ = ["EgressProxy", "address_kind", "resolve_allowed"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CONNECT_TIMEOUT = 15.0  # seconds to connect to a server
IDLE_TIMEOUT = 120.0  # seconds a connection may stay silent
MAX_HEAD = 64 * 1024  # bytes of request or response head


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses a NAT64 gateway maps to IPv4


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_kind(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public internet address (``"loopback"``, ``"private"``...), or None
    when it is public."""
    ip = _embedded(ipaddress.ip_address(str(address).split("%", 1)[0]))
    if isinstance(ip, ipaddress.IPv6Address) and ip.teredo is not None:
        return address_kind(ip.teredo[1])
    for kind, test in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if test:
            return kind
    return None if ip.is_global else "non-public"


def resolve_allowed(
    host: str, port: int, allowed: Sequence[Network] = ()
) -> tuple[list[str], str | None]:
    """Resolve ``host`` and check every address it has.

    Args:
        host: a name or an address literal.
        port: the TCP port (for the lookup only).
        allowed: networks accepted besides public addresses.

    Returns:
        ``(addresses, refusal)``: ``refusal`` says which address is not public and why (None when
        every address may be reached). A host with one non-public address is refused, so a DNS
        answer cannot mix a public address with an internal one.

    Raises:
        OSError: the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(_embedded(ip) in net or ip in net for net in allowed):
            continue
        kind = address_kind(ip)
        if kind is not None:
            shown = host if host == address else f"{host} ({address})"
            article = "an" if kind[0] in "aeiou" else "a"
            return addresses, f"{shown} is {article} {kind} address"
    return addresses, None


# -- the proxy (child process) -------------------------------------------------------------------


def _read_head(sock: socket.socket, limit: int = MAX_HEAD) -> tuple[bytes, bytes]:
    """Bytes up to the blank line that ends an HTTP head, and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the middle of a request")
        data += chunk
        if len(data) > limit:
            raise ConnectionError("request head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until one side closes or both stay silent for IDLE_TIMEOUT."""
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            ready = sel.select(IDLE_TIMEOUT)
            if not ready:
                return
            for key, _ in ready:
                src = key.fileobj
                assert isinstance(src, socket.socket)
                chunk = src.recv(65536)
                if not chunk:
                    return
                key.data.sendall(chunk)


def _keep(line: str) -> bool:
    name = line.split(":", 1)[0].strip().lower()
    return name not in ("connection", "proxy-connection", "keep-alive", "proxy-authorization")


class _Handler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(IDLE_TIMEOUT)
        try:
            head, rest = _read_head(client)
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            if not self._authorized(lines[1:]):
                self._answer(407, "Proxy Authentication Required", "this proxy needs its token")
                return
            if method == "CONNECT":
                host, _, port_text = target.rpartition(":")
                upstream = self._connect(host.strip("[]"), int(port_text))
                if upstream is None:
                    return
                with upstream:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if rest:
                        upstream.sendall(rest)
                    _pipe(client, upstream)
                return
            parts = urlsplit(target)
            if method not in ("GET", "HEAD") or parts.scheme != "http" or not parts.hostname:
                self._answer(405, "Method Not Allowed", "only GET and HEAD of http:// URLs")
                return
            upstream = self._connect(parts.hostname, parts.port or 80)
            if upstream is None:
                return
            with upstream:
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                out = [f"{method} {path} {version}", *filter(_keep, lines[1:]), "Connection: close"]
                upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
                # one request per connection: the answer says so, and ends when the server closes
                answer, body = _read_head(upstream)
                answer_lines = answer.decode("latin-1").split("\r\n")
                kept = [answer_lines[0], *filter(_keep, answer_lines[1:]), "Connection: close"]
                client.sendall(("\r\n".join(kept) + "\r\n\r\n").encode("latin-1") + body)
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)
        except (OSError, ValueError) as exc:
            self.server.note(f"connection dropped: {exc}")

    def _authorized(self, headers: Iterable[str]) -> bool:
        expected = base64.b64encode(f"geoseg:{self.server.token}".encode()).decode()
        for line in headers:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                scheme, _, given = value.strip().partition(" ")
                return scheme.lower() == "basic" and hmac.compare_digest(given.strip(), expected)
        return False

    def _connect(self, host: str, port: int) -> socket.socket | None:
        """A connection to ``host:port`` at an address checked here, or None after answering
        the client why not."""
        try:
            addresses, refusal = resolve_allowed(host, port, self.server.allowed)
        except OSError as exc:
            self._answer(502, "Bad Gateway", f"{host} does not resolve ({exc})")
            return None
        if refusal is not None:
            self.server.note(f"refused a connection to {host}:{port}: {refusal}")
            self._answer(403, "Forbidden", f"{refusal}; this server reads public addresses only")
            return None
        last: OSError | None = None
        for address in addresses:
            try:
                upstream = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                last = exc
                continue
            upstream.settimeout(IDLE_TIMEOUT)
            return upstream
        self._answer(502, "Bad Gateway", f"could not connect to {host}:{port} ({last})")
        return None

    def _answer(self, code: int, reason: str, text: str) -> None:
        body = (text + "\n").encode()
        self.request.sendall(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, token: str, allowed: Sequence[Network]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.allowed = tuple(allowed)

    def note(self, text: str) -> None:
        print(f"geoseg app egress: {text}", file=sys.stderr, flush=True)


def _serve(allowed: Sequence[str]) -> None:
    """The child's main: read the token from stdin, print the port, serve until stdin closes."""
    token = sys.stdin.readline().strip()
    server = _ProxyServer(token, [ipaddress.ip_network(a) for a in allowed])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # returns when the app closes the pipe, or dies
    os._exit(0)


# -- the app's side ------------------------------------------------------------------------------


class EgressProxy:
    """The app's handle on its proxy process.

    Args:
        allowed: networks the proxy may reach besides public addresses (e.g. ``10.1.2.0/24`` for
            an internal COG server).
    """

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        import secrets

        self.allowed = tuple(str(ipaddress.ip_network(a)) for a in allowed)
        self.token = secrets.token_hex(16)
        self._proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), *self.allowed],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(self.token + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise OSError(f"the app's URL proxy did not start (it said {line!r})")
        self.port = int(line)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> str:
        """``user:token`` for the proxy's basic authentication."""
        return f"geoseg:{self.token}"

    def close(self) -> None:
        """Stop the proxy process (it also stops by itself when this process dies)."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


if __name__ == "__main__":
    _serve(sys.argv[1:])

"""Who may call the server, and from where: API keys, Host / Origin checks, CORS, binding.

- **Keys.**  Without any key the server is open (fine on loopback).  With keys every
  route but ``/health`` needs ``Authorization: Bearer KEY``: a *full* key may do
  everything, a *read* key only what does not change the collection.  Keys are
  compared in constant time (their sha256 digests, so not even the length leaks).
- **DNS rebinding.**  A request that arrives on a loopback address must name a loopback
  host (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or an ``allowed_hosts`` name in
  ``Host``: a foreign site that rebinds its name to 127.0.0.1 sends its own name there.
- **Cross-site requests.**  An ``Origin`` other than the server's own is refused unless
  CORS allows it; browsers always send ``Origin`` on cross-site fetches, other clients
  do not send it at all.  (JSON-only bodies, ``schemas.read_json``, close the "simple
  request" door a ``text/plain`` form post would use.)
- **Binding.**  A non-loopback address needs a key, unless ``insecure`` says otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .. import errors
from .errors import BadHost, BadOrigin, MissingKey, ReadOnlyKey, WrongKey, error_response

__all__ = ["OPEN", "READ", "WRITE", "Guard", "Security", "is_loopback", "read_key_file"]

#: what a route needs: nothing, a read key, a full key
OPEN, READ, WRITE = "open", "read", "write"

_LOCAL_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """``host`` (an IP literal or a name, no port) is a loopback address."""
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def read_key_file(path: str | Path) -> list[str]:
    """The keys in a file: one per line; blank lines and ``#`` comments are skipped.

    Raises:
        InputError: the file cannot be read or holds no key.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InputError(f"{path}: cannot read the API key file: {exc}") from None
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise errors.InputError(f"{path}: the API key file holds no key")
    return keys


def _origin(value: str) -> str:
    """A configured CORS origin, checked: ``*``, or ``scheme://host[:port]``."""
    if value == "*":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise errors.InputError(f"--cors-origin {value!r} is not an origin: give "
                                "scheme://host[:port] without a path (or * for any)")
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class Security:
    """The server's access rules.

    Args:
        api_keys: full-access keys (read and write).
        read_keys: keys that may call every route that does not change the collection.
        cors_origins: origins browsers may call from (``*``: any); empty: CORS off.
        allowed_hosts: extra ``Host`` names accepted on loopback (e.g. a reverse
            proxy's public name).
        insecure: allow binding a non-loopback address without a key.

    Raises:
        InputError: an empty key, a key given as both kinds, or a malformed origin.
    """

    api_keys: tuple[str, ...] = ()
    read_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    insecure: bool = False
    _full: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _read: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        full = tuple(k.strip() for k in self.api_keys)
        read = tuple(k.strip() for k in self.read_keys)
        if any(not k for k in full + read):
            raise errors.InputError("an API key is empty")
        if set(full) & set(read):
            raise errors.InputError("the same key is given as a full-access and a read-only key")
        object.__setattr__(self, "_full", tuple(_digest(k) for k in full))
        object.__setattr__(self, "_read", tuple(_digest(k) for k in read))
        object.__setattr__(self, "cors_origins", tuple(_origin(o) for o in self.cors_origins))
        object.__setattr__(self, "allowed_hosts", tuple(h.lower() for h in self.allowed_hosts))

    def __repr__(self) -> str:  # never the keys themselves
        return (f"Security(api_keys={len(self.api_keys)}, read_keys={len(self.read_keys)}, "
                f"cors_origins={self.cors_origins}, allowed_hosts={self.allowed_hosts}, "
                f"insecure={self.insecure})")

    @property
    def has_keys(self) -> bool:
        return bool(self._full or self._read)

    # ------------------------------------------------------------------ keys
    def authorize(self, authorization: str | None, access: str) -> None:
        """Check the ``Authorization`` header for a route needing ``access``.

        Raises:
            MissingKey, WrongKey: 401.
            ReadOnlyKey: a read key on a write route (403).
        """
        if access == OPEN or not self.has_keys:
            return
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise MissingKey("this server needs an API key: send 'Authorization: Bearer KEY'")
        digest = _digest(token)
        # every key is compared, so the time taken does not tell which one matched
        full = read = False
        for d in self._full:
            full |= hmac.compare_digest(d, digest)
        for d in self._read:
            read |= hmac.compare_digest(d, digest)
        if not (full or read):
            raise WrongKey("the API key is not valid")
        if access == WRITE and not full:
            raise ReadOnlyKey("this API key may only read; writing documents needs a "
                              "full-access key (--api-key)")

    # ------------------------------------------------------------------ binding
    def check_bind(self, host: str) -> None:
        """Refuse to serve a non-loopback ``host`` without a key (unless ``insecure``).

        Raises:
            InputError: the bind would expose an open server.
        """
        if is_loopback(host) or self.has_keys or self.insecure:
            return
        raise errors.InputError(
            f"refusing to listen on {host or 'every interface'} without an API key: anyone who "
            "can reach it could read and write the collection. Give --api-key / --api-key-file "
            "(or LODEVEC_API_KEY), or --insecure if something in front of the server "
            "already restricts access")

    # ------------------------------------------------------------------ host / origin
    def check_host(self, host_header: str | None) -> None:
        """``Host`` of a request that arrived on a loopback address.  Raises ``BadHost``."""
        if host_header is None:  # HTTP/1.0: no browser sends that
            return
        host = _host_of(host_header)
        if is_loopback(host) or host in self.allowed_hosts:
            return
        raise BadHost(f"the Host header {host_header!r} is not this server's (a loopback "
                      "address or localhost); behind a proxy, add the name with --allow-host")

    def check_origin(self, origin: str | None, host_header: str | None) -> None:
        """A browser's ``Origin``: this server itself, or allowed by CORS.  Raises ``BadOrigin``."""
        if origin is None or "*" in self.cors_origins:
            return
        value = origin.strip().lower()
        if value in self.cors_origins:
            return
        if host_header and urlsplit(value).netloc == host_header.strip().lower():
            return  # same origin
        raise BadOrigin(f"requests from {origin!r} are not allowed; start the server with "
                        f"--cors-origin {origin} to allow that site")


def _host_of(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``), lowercase."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: the Host check (on loopback connections) and the Origin check,
    before any route (or CORS preflight) runs."""

    def __init__(self, app, security: Security):
        self.app = app
        self.security = security

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for k, v in scope.get("headers", ()):
            if k in (b"host", b"origin"):
                headers[k] = v.decode("latin-1")
        host = headers.get(b"host")
        try:
            server = scope.get("server")
            if isinstance(server, (tuple, list)) and server and is_loopback(str(server[0])):
                self.security.check_host(host)
            self.security.check_origin(headers.get(b"origin"), host)
        except (BadHost, BadOrigin) as exc:
            return await error_response(exc)(scope, receive, send)
        return await self.app(scope, receive, send)

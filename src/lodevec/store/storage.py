"""Where a database lives: local folders and object-store URIs, and their storage options.

A database URI is a folder (or ``file://``) or an object-store URI passed to LanceDB as
is: ``s3://bucket/prefix``, ``gs://...``, ``az://...``.  Its storage options (LanceDB's
``storage_options``: credentials, region, endpoint) come from, later winning:

1. the standard environment, for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
   ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), ``AWS_ENDPOINT_URL``
   (or ``AWS_ENDPOINT``) and ``AWS_ALLOW_HTTP``;
2. the process defaults (:func:`set_defaults`: what ``--storage-option KEY=VALUE`` sets,
   so every database a CLI command opens, the server's included, gets them);
3. ``Database(storage_options=...)``.

The options are resolved here once, into one dict, so that LanceDB and the write lease
(:mod:`lodevec.store.lease`, which talks to the bucket itself) reach the same endpoint
with the same credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from .. import errors

__all__ = ["scheme", "resolve_options", "set_defaults", "parse_options", "s3_location",
           "OBJECT_STORE_SCHEMES"]

#: URI schemes LanceDB reaches through its object store (anything else with ``://`` too,
#: passed through; these are the ones documented)
OBJECT_STORE_SCHEMES = ("s3", "s3+ddb", "gs", "az", "abfss")

#: environment variable -> storage option (S3); LanceDB reads most of them itself, but the
#: lease's client must see the same values, so they are copied into the options
_S3_ENV = (
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("AWS_SESSION_TOKEN", "aws_session_token"),
    ("AWS_DEFAULT_REGION", "aws_region"),
    ("AWS_REGION", "aws_region"),          # (after DEFAULT: the more specific one wins)
    ("AWS_ENDPOINT", "aws_endpoint"),
    ("AWS_ENDPOINT_URL", "aws_endpoint"),
    ("AWS_ALLOW_HTTP", "allow_http"),
)
#: spellings LanceDB / object_store accept for one S3 option -> the one used here
_S3_ALIASES = {
    "access_key_id": "aws_access_key_id", "secret_access_key": "aws_secret_access_key",
    "session_token": "aws_session_token", "region": "aws_region",
    "endpoint": "aws_endpoint", "endpoint_url": "aws_endpoint", "aws_endpoint_url": "aws_endpoint",
    "aws_allow_http": "allow_http",
}

_defaults: dict[str, str] = {}


def scheme(uri: str) -> str:
    """The URI's scheme, lower case ("" for a local path or ``file://``)."""
    if "://" not in uri or uri.startswith("file://"):
        return ""
    return uri.split("://", 1)[0].lower()


def parse_options(pairs: Iterable[str] | None) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (``--storage-option``) as a dict; keys are lower-cased.

    Raises:
        InputError: an item without ``=`` or with an empty key.
    """
    out: dict[str, str] = {}
    for p in pairs or ():
        key, sep, value = str(p).partition("=")
        if not sep or not key.strip():
            raise errors.InputError(
                f"--storage-option {p!r}: expected KEY=VALUE, e.g. aws_region=eu-west-1")
        out[key.strip().lower()] = value
    return out


def set_defaults(options: Mapping[str, str] | None) -> None:
    """Storage options every :class:`~lodevec.store.Database` of this process starts from
    (the CLI's ``--storage-option``; ``Database(storage_options=)`` still wins)."""
    _defaults.clear()
    _defaults.update({str(k).lower(): str(v) for k, v in (options or {}).items()})


def _canonical(uri: str, options: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for k, v in options.items():
        k = str(k).lower()
        if scheme(uri).startswith("s3"):
            k = _S3_ALIASES.get(k, k)
        out[k] = str(v)
    return out


def resolve_options(uri: str, options: Mapping[str, str] | None) -> dict[str, str] | None:
    """The storage options a database at ``uri`` is opened with (None for a local path).

    Raises:
        InputError: an object-store URI without a bucket (``s3://``).
    """
    s = scheme(uri)
    if not s:
        return None
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise errors.InputError(f"{uri}: expected {s}://BUCKET[/PREFIX]")
    out: dict[str, str] = {}
    if s.startswith("s3"):
        for env, key in _S3_ENV:
            if os.environ.get(env):
                out[key] = os.environ[env]
    out.update(_canonical(uri, _defaults))
    out.update(_canonical(uri, options or {}))
    if s.startswith("s3") and out.get("aws_endpoint", "").startswith("http://"):
        # a plain-HTTP endpoint (a local S3 server) needs allow_http, or object_store
        # refuses it: say so rather than fail deep in LanceDB
        if out.get("allow_http", "").lower() not in ("true", "1", "yes"):
            raise errors.InputError(
                f"{uri}: the endpoint {out['aws_endpoint']} is plain HTTP: set "
                "AWS_ALLOW_HTTP=true (or --storage-option allow_http=true)")
    return out


def s3_location(uri: str) -> tuple[str, str]:
    """``(bucket, key prefix without trailing '/')`` of an ``s3://`` URI."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


# -- the CLI's door (kept here so cli.py only calls these two)
def add_cli_arguments(parser) -> None:
    """Add ``--storage-option KEY=VALUE`` (repeatable) next to a command's ``--db``."""
    parser.add_argument("--storage-option", action="append", default=None, metavar="KEY=VALUE",
                        dest="storage_options",
                        help="object-store option for --db (repeatable), e.g. aws_region=eu-west-1, "
                             "aws_endpoint=http://127.0.0.1:9000, allow_http=true")


def apply_cli_arguments(args) -> None:
    """Make the parsed ``--storage-option`` values the process defaults (every database
    the command opens, the server's included, starts from them)."""
    set_defaults(parse_options(getattr(args, "storage_options", None)))

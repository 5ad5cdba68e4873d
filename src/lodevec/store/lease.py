"""A cross-machine write lease on an object store: the ``flock`` of S3 databases.

Why a lease and not Lance's own conflict detection: Lance's merge-insert records the
keys it inserts (for an unenforced primary key) so that two concurrent inserts of one
new id conflict, but not on every path: with a scalar index on the key (lodevec keeps a
BTREE on ``id`` for lookups) the indexed execution leaves the inserted-key filter out and
both commits succeed (lance-format/lance#8949, #9238; lancedb#3377), which is the
duplicate the store saw on S3.  And index builds and compaction have no such check at
all.  So lodevec writers exclude each other themselves, with one object per collection,
``<db>/.lodevec-locks/<name>.lease``, as the local ``flock`` does:

* **acquire**: ``PUT`` with ``If-None-Match: *`` -- only one writer can create it (S3
  answers the others 412 PreconditionFailed);
* **renew**: a heartbeat thread rewrites it every ``ttl / 4`` with ``If-Match: <our
  ETag>``; a rewrite that fails means another writer took it over;
* **expiry**: a writer that finds the lease taken watches its ETag; once the ETag has not
  changed for ``ttl`` seconds *on the watcher's own clock* (no clock comparison between
  machines) its holder is dead or cut off, and the watcher takes it over with
  ``If-Match: <that ETag>`` (one taker wins) and the generation number plus one;
* **fencing**: before every LanceDB call of the table (:meth:`S3Lease.fence`) the holder
  renews the lease unless it did within ``ttl / 8``, and stops writing once ``ttl -
  margin`` has passed since its last successful renewal: a call therefore starts at
  least 7/8 of a ttl before anyone may take the lease over, and the heartbeat keeps
  renewing while it runs.  What remains is a call that outlives 7/8 of a ttl *while*
  every renewal fails (a holder cut off from the store mid-call whose last request
  lands later); a paused holder that wakes up is refused (its renewal fails on the
  ETag, its next call on the clock);
* **release**: a last rewrite (``If-Match: <our ETag>``) marks it released; the next
  writer takes it with ``If-Match`` at once.  The object is never deleted, so the
  generation only grows: every holder's generation is larger than all before it.

A writer killed with ``kill -9`` blocks the others for at most ``ttl`` seconds.  The
lease needs ``boto3`` (``pip install lodevec[s3]``), imported only when a write takes it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping

from .. import errors
from .storage import s3_location

__all__ = ["S3Lease", "lease_for", "DEFAULT_TTL"]

#: seconds a lease lives without renewal (a dead writer blocks others this long)
DEFAULT_TTL = 20.0
#: seconds before expiry the holder stops writing (a LanceDB call must finish in that time)
_MARGIN_FRACTION = 0.25
#: seconds to wait for the lease before giving up with an error
DEFAULT_WAIT = 600.0


def _s3_client(options: Mapping[str, str]):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - boto3 is in the s3 and test extras
        raise errors.StoreError(
            "writing to an s3:// database needs boto3 for its cross-machine write lease: "
            "pip install 'lodevec[s3]'") from None
    kw = {}
    if options.get("aws_endpoint"):
        kw["endpoint_url"] = options["aws_endpoint"]
    if options.get("aws_access_key_id"):
        kw["aws_access_key_id"] = options["aws_access_key_id"]
        kw["aws_secret_access_key"] = options.get("aws_secret_access_key")
        kw["aws_session_token"] = options.get("aws_session_token")
    return boto3.session.Session().client(
        "s3", region_name=options.get("aws_region") or "us-east-1",
        config=Config(retries={"max_attempts": 3, "mode": "standard"},
                      s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=10), **kw)


#: error codes of a conditional PUT that lost (412; 409 when two race on S3 itself)
_TAKEN = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_GONE = ("NoSuchKey", "404")


def _code(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", "")) or str(
        resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class S3Lease:
    """The write lease of one collection in an S3 bucket (re-entrant, thread-safe; the
    same protocol as :class:`lodevec.store._lance.WriteLock`).

    Args:
        uri: the database URI (``s3://bucket/prefix``).
        name: the collection.
        options: the resolved storage options (:func:`lodevec.store.storage.resolve_options`).
        ttl: seconds the lease lives without renewal.
        wait: seconds to wait for a lease another writer holds.

    Attributes:
        generation: the fencing generation of the lease we hold (or last held).
        takeovers: leases we took over from a writer that stopped renewing.
    """

    #: a lease excludes every other lodevec writer, like the local flock (bulk upserts
    #: may check ids then append)
    exclusive = True
    path = None  # not a local file: optimize keeps LanceDB's safe cleanup (see Collection)

    def __init__(self, uri: str, name: str, options: Mapping[str, str], *,
                 ttl: float = DEFAULT_TTL, wait: float = DEFAULT_WAIT):
        bucket, prefix = s3_location(uri)
        self.uri, self.name = uri, name
        self.bucket = bucket
        self.key = "/".join(p for p in (prefix, ".lodevec-locks", f"{name}.lease") if p)
        self.ttl, self.wait = float(ttl), float(wait)
        self._options = dict(options)
        self._client = None
        self._mutex = threading.RLock()
        self._depth = 0
        self._etag: str | None = None
        self._free_etag: str | None = None   # the ETag of our own release, if last
        self._renewing = threading.Lock()
        #: called once the lease is taken (the collection brings its table up to date)
        self.on_acquire = None
        self._renewed_at = 0.0          # monotonic start of the last successful PUT
        self._lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.generation = 0
        self.takeovers = 0

    # -- protocol
    def __enter__(self) -> S3Lease:
        self._mutex.acquire()
        if self._depth == 0:
            try:
                self._acquire()
            except BaseException:
                self._mutex.release()
                raise
            if self.on_acquire is not None:
                try:
                    self.on_acquire()
                except BaseException:
                    self._release()
                    self._mutex.release()
                    raise
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._release()
        finally:
            self._mutex.release()

    def held(self) -> bool:
        return self._depth > 0 and self._etag is not None

    def fence(self) -> None:
        """Before each LanceDB call under the lease: renew it now unless it was renewed
        within the last ``ttl / 8`` (so every call starts with at least 7/8 of a ttl
        before anyone may take the lease over), and raise if it is lost."""
        if self._depth == 0 or self._etag is None:
            return
        if not self._lost and time.monotonic() - self._renewed_at > self.ttl / 8:
            self._renew()
        if self._lost or time.monotonic() - self._renewed_at > self.ttl * (1 - _MARGIN_FRACTION):
            raise errors.StoreError(
                f"{self.uri}: collection {self.name!r}: lost the write lease "
                f"s3://{self.bucket}/{self.key} (not renewed for {self.ttl * (1 - _MARGIN_FRACTION):.0f} s); "
                "nothing more is written by this process, run the command again")

    # -- S3 calls
    @property
    def client(self):
        if self._client is None:
            self._client = _s3_client(self._options)
        return self._client

    def _body(self, released: bool) -> bytes:
        # the nonce makes every rewrite's ETag new (renewals must be seen to change it)
        return json.dumps({"owner": self.owner, "generation": self.generation,
                           "ttl": self.ttl, "time": time.time(), "released": released,
                           "nonce": uuid.uuid4().hex}).encode()

    def _put(self, released: bool = False, **cond) -> str:
        start = time.monotonic()
        r = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(released),
                                   ContentType="application/json", **cond)
        self._renewed_at = start
        return r["ETag"]

    def _acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        seen: tuple[str, float] | None = None    # (ETag, monotonic time first seen)
        delay = 0.05
        while self._free_etag is not None:  # we released it last: one rewrite retakes it
            etag, self._free_etag = self._free_etag, None
            try:
                self.generation += 1
                self._etag = self._put(IfMatch=etag)
                return self._start_heartbeat()
            except Exception as e:
                if _code(e) not in _TAKEN + _GONE:
                    raise errors.StoreError(
                        f"{self.uri}: cannot take the write lease s3://{self.bucket}/{self.key}: {e}") from e
        while True:
            try:
                self.generation = 1
                self._etag = self._put(IfNoneMatch="*")
                break
            except Exception as e:
                if _code(e) not in _TAKEN:
                    raise errors.StoreError(
                        f"{self.uri}: cannot take the write lease s3://{self.bucket}/{self.key}: {e}") from e
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self.key)
                etag, info = r["ETag"], json.loads(r["Body"].read() or b"{}")
            except Exception as e:
                if _code(e) in _GONE:
                    continue  # (only a hand-deleted lease vanishes): create it again
                raise errors.StoreError(
                    f"{self.uri}: cannot read the write lease s3://{self.bucket}/{self.key}: {e}") from e
            now = time.monotonic()
            if seen is None or seen[0] != etag:
                seen = (etag, now)
            free = bool(info.get("released"))
            if free or now - seen[1] > float(info.get("ttl", self.ttl)):
                # released, or not renewed for a whole ttl on our clock (its holder is
                # gone): one taker wins the conditional rewrite
                self.generation = int(info.get("generation", 0)) + 1
                try:
                    self._etag = self._put(IfMatch=etag)
                    self.takeovers += not free
                    break
                except Exception as e:
                    if _code(e) not in _TAKEN + _GONE:
                        raise errors.StoreError(
                            f"{self.uri}: cannot take over the write lease s3://{self.bucket}/{self.key}: {e}") from e
                    seen = None
                    continue
            if now > deadline:
                raise errors.StoreError(
                    f"{self.uri}: collection {self.name!r} is being written by "
                    f"{info.get('owner', 'another writer')} (lease s3://{self.bucket}/{self.key}); "
                    f"gave up after {self.wait:.0f} s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(0.5, delay * 2)
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        self._lost = False
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{self.name}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        # renewals never wait for the writers' mutex: a long write must not starve them
        while not self._stop.wait(self.ttl / 4):
            if self._etag is None or not self._renew():
                return

    def _renew(self) -> bool:
        """Rewrite the lease if it is still ours; False once it is lost.  One renewal at
        a time (the heartbeat's and fence()'s would otherwise race on the ETag)."""
        with self._renewing:
            etag = self._etag
            if etag is None or self._lost:
                return False
            try:
                self._etag = self._put(IfMatch=etag)
            except Exception as e:
                if _code(e) in _TAKEN + _GONE:
                    self._lost = True  # taken over: fence() refuses further writes
                    return False
                # a transient error: keep the ETag, try again next time (fence() stops
                # the writes if it lasts too long)
            return True

    def _release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=self.ttl)
            self._beat = None
        etag, self._etag = self._etag, None
        if etag is None or self._lost:
            return
        try:
            self._free_etag = self._put(released=True, IfMatch=etag)
        except Exception:  # taken over meanwhile: not ours to release; or unreachable,
            pass           # and then it expires after ttl


def lease_for(db, name: str):
    """The cross-machine write lock of collection ``name`` in ``db``: an :class:`S3Lease`
    for ``s3://`` databases, None elsewhere (local databases use the ``flock``; gs:// and
    az:// have no lease yet: one writer at a time is the caller's job there)."""
    from .storage import scheme

    if scheme(db.uri) != "s3":
        return None
    ttl = float(os.environ.get("LODEVEC_LEASE_TTL", DEFAULT_TTL))
    return S3Lease(db.uri, name, db.storage_options or {}, ttl=ttl)

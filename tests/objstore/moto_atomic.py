"""``moto_server`` with its conditional writes made atomic, as S3's are.

moto checks ``If-None-Match`` / ``If-Match`` and then stores the object as two steps,
with nothing holding them together, in a threaded server: two conditional PUTs racing
on one key could both succeed (not seen in a quick trial, where the GIL happened to
keep them apart, but nothing guarantees it).  S3 does not allow that, and both the
lodevec lease and Lance's own manifest commits rely on it.  This runs moto's own
application and request handler, serialising only the requests that carry a
condition; everything else stays concurrent.

Run: ``python moto_atomic.py HOST PORT``.
"""

from __future__ import annotations

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple

_CONDITIONAL = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH")


class AtomicConditionalWrites:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE") and any(
                k in environ for k in _CONDITIONAL):
            with self.lock:
                # the whole body is produced inside the lock (the write happens there)
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, AtomicConditionalWrites(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

"""Log rotation for a small service: keep a week of logs, one file per day."""

import logging
from logging.handlers import TimedRotatingFileHandler


def setup_logging(path: str = "service.log") -> logging.Logger:
    """Rotate the log file at midnight and keep the last seven files."""
    handler = TimedRotatingFileHandler(path, when="midnight", backupCount=7)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("service")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def retry(fn, attempts: int = 3):
    """Call fn until it succeeds, at most `attempts` times; re-raise the last error."""
    for i in range(attempts):
        try:
            return fn()
        except OSError:
            if i == attempts - 1:
                raise

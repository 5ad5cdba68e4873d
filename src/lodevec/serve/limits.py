"""The server's request limits and batching settings."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Request limits and batching settings.

    Attributes:
        max_body_bytes: largest request body (413 beyond).
        max_inputs: most texts (or documents) per request (413 beyond; OpenAI's is 2048).
        max_request_tokens: most tokens per request, after truncation (413 beyond).
        max_k: largest ``k`` of ``/search``.
        truncate: default for the request field ``truncate``: cut over-long inputs to
            the model's maximum (True) or refuse them with 413 (False).  ``None``
            follows the embedder's own ``truncate`` setting.
        max_batch_size: most texts per model forward.
        max_batch_tokens: most tokens per model forward (``None``: the backend's budget).
        max_wait_ms: how long the first queued text waits for others to join its batch.
        max_queue: most texts waiting for the model; more get 429.
        max_connections: most open connections (kept below the file limit); beyond it
            the one idle the longest is closed, or the newcomer gets 503.
        header_timeout: seconds a client has to send a request's line and headers.
        body_timeout: seconds a request's body may go without a byte.
        keep_alive: seconds an idle kept-alive connection stays open.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_inputs: int = 2048
    max_request_tokens: int = 300_000
    max_k: int = 1000
    truncate: bool | None = None
    max_batch_size: int = 64
    max_batch_tokens: int | None = None
    max_wait_ms: float = 3.0
    max_queue: int = 8192
    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0

    def __post_init__(self):
        for name in ("max_body_bytes", "max_inputs", "max_request_tokens", "max_k",
                     "max_batch_size", "max_queue", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be in 0..1000, got {self.max_wait_ms}")
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be in (0, 3600] seconds, got {getattr(self, name)}")

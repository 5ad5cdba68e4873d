"""Counters and histograms, and ``/metrics`` in the Prometheus text format (0.0.4).

The server's state lives on one event loop, so the counters need no locks; the
batcher's counters are read from it (``DynamicBatcher`` keeps its own).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence

from .. import __version__

__all__ = ["HttpMetrics", "Histogram", "render"]

#: the methods counted by name; any other is counted as "other" (a client can invent
#: methods without end, and every label value is a new series)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Histogram:
    """A cumulative histogram in the Prometheus sense (fixed upper bounds, sum, count).

    Args:
        buckets: increasing upper bounds; ``+Inf`` is implied.
    """

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs, cumulative, ending with ``+Inf``."""
        out, total = [], 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else f"{bound:g}", total))
        return out


class HttpMetrics:
    """Request counters and latency histograms (single event-loop thread: no locks)."""

    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.in_flight = 0
        self.tokens = 0
        self.texts = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request; ``route`` must come from a closed set (the app's route
        templates or "other"), ``method`` is folded into ``METHODS`` or "other"."""
        self.requests[(route, method if method in METHODS else "other", status)] += 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    """Builds Prometheus text exposition format 0.0.4."""

    def __init__(self):
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_: str,
               samples: list[tuple[dict, float]] | float) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        if not isinstance(samples, list):
            samples = [({}, samples)]
        for labels, value in samples:
            self.lines.append(f"{name}{self._labels(labels)} {self._num(value)}")

    def histogram(self, name: str, help_: str, hists: list[tuple[dict, Histogram]]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for labels, h in hists:
            for le, n in h.cumulative():
                self.lines.append(f"{name}_bucket{self._labels({**labels, 'le': le})} {n}")
            self.lines.append(f"{name}_sum{self._labels(labels)} {self._num(h.sum)}")
            self.lines.append(f"{name}_count{self._labels(labels)} {h.count}")

    @staticmethod
    def _labels(labels: dict) -> str:
        if not labels:
            return ""
        return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"

    @staticmethod
    def _num(v: float) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
        return repr(v) if isinstance(v, float) else str(int(v))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(*, model: str, dim: int, up: bool, http: HttpMetrics, batcher, cache: dict,
           pending_writes: int) -> str:
    """The ``/metrics`` page.

    Args:
        model: the model file's name.
        dim: the dimension served.
        up: the server accepts requests.
        http: the request counters.
        batcher: the ``DynamicBatcher`` (its counters and histograms).
        cache: ``EmbeddingCache.stats()``.
        pending_writes: store writes queued or running.
    """
    m, b, ex = http, batcher, _Exposition()
    ex.metric("lodevec_info", "gauge", "Model served (value is always 1).",
              [({"version": __version__, "model": model, "dimension": dim}, 1)])
    ex.metric("lodevec_up", "gauge", "1 when the server accepts requests.", 1 if up else 0)
    ex.metric("lodevec_http_requests_total", "counter", "HTTP requests by route, method and status.",
              [({"route": r, "method": meth, "status": s}, n)
               for (r, meth, s), n in sorted(m.requests.items())])
    ex.histogram("lodevec_http_request_duration_seconds", "HTTP request latency by route.",
                 [({"route": r}, h) for r, h in sorted(m.latency.items())])
    ex.metric("lodevec_http_requests_in_flight", "gauge", "Requests being served.", m.in_flight)
    ex.metric("lodevec_embedded_texts_total", "counter", "Texts embedded for requests.", m.texts)
    ex.metric("lodevec_embedded_tokens_total", "counter",
              "Tokens of the texts embedded for requests.", m.tokens)
    ex.metric("lodevec_batches_total", "counter",
              "Batched embedding calls (model forwards unless served from cache).", b.batches)
    ex.metric("lodevec_batch_inputs_total", "counter", "Texts in batched calls.", b.inputs)
    ex.metric("lodevec_batch_failures_total", "counter", "Batched calls that raised.",
              b.failed_batches)
    ex.metric("lodevec_batch_size_max", "gauge", "Largest batch so far.", b.max_batch_seen)
    ex.histogram("lodevec_batch_size", "Texts per batched call.", [({}, b.batch_sizes)])
    ex.histogram("lodevec_batch_tokens", "Tokens per batched call.", [({}, b.batch_tokens)])
    ex.histogram("lodevec_batch_duration_seconds", "Time of one batched call.",
                 [({}, b.forward_seconds)])
    ex.histogram("lodevec_queue_wait_seconds", "Time a request waited for its first batch.",
                 [({}, b.queue_wait)])
    ex.metric("lodevec_queue_depth", "gauge", "Texts waiting for a batch.", b.queue_depth)
    ex.metric("lodevec_queue_rejected_total", "counter", "Requests refused with 429 (queue full).",
              b.rejected)
    ex.metric("lodevec_cache_hits_total", "counter", "Embedding cache hits.", cache["hits"])
    ex.metric("lodevec_cache_misses_total", "counter", "Embedding cache misses.", cache["misses"])
    ex.metric("lodevec_cache_entries", "gauge", "Embeddings in the cache.", cache["entries"])
    ex.metric("lodevec_store_pending_writes", "gauge", "Store writes queued or running.",
              pending_writes)
    return ex.text()

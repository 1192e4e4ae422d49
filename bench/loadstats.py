"""Statistics of an HTTP load run: latency percentiles and error counts.

Pure (no I/O), so the load generator (bench/loadgen.py) and its unit tests
share one definition of what a percentile and an error are.

- Latencies count only requests that got a complete 2xx response and were
  *sent* inside the measurement window; warm-up requests are left out.
- Errors are counted over the whole run, warm-up included (a connection refused
  while 1,000 clients connect at once is an error even though no latency was
  measured yet), and by kind: ``connect`` (could not open a connection),
  ``timeout`` (no complete response within the client's timeout), ``read`` (the
  connection closed, reset or sent something that is not HTTP/1.1 mid-request)
  and ``status`` (a complete response that is not 2xx). Timeouts of a
  connection's *first* request are also counted apart: a connection the
  server has not even accepted yet (still in the kernel's listen queue) shows
  up as exactly that.
- Percentiles use the nearest-rank method on the sorted samples: p99 of 1,000
  samples is the 990th smallest, never an interpolation between two.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class ErrorKind(StrEnum):
    CONNECT = "connect"
    TIMEOUT = "timeout"
    READ = "read"
    STATUS = "status"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ascending values."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0.0 < q <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    # rounded first so that float noise (99.9 / 100 * 1000 = 999.0000000000001)
    # does not move the rank up by one
    rank = math.ceil(round(q * len(sorted_values) / 100.0, 9))
    return float(sorted_values[max(rank, 1) - 1])


def percentile_key(q: float) -> str:
    """``p50``, ``p99``, ``p99.9``: the JSON field name of a percentile."""
    return f"p{q:g}"


@dataclass(frozen=True)
class Summary:
    """What one load run measured; latencies in milliseconds."""

    connections: int
    window_seconds: float
    responses: int  # complete 2xx responses to requests sent in the window
    throughput: float  # responses / window_seconds
    latency_ms: dict[str, float]  # p50, p90, p99, p99.9, max, mean (empty if no responses)
    errors: dict[str, int]  # per ErrorKind, whole run
    statuses: dict[str, int]  # every status code seen, whole run
    client_cpu_seconds: float = 0.0  # the load generator's own CPU (user + system)
    first_request_timeouts: int = 0  # of errors["timeout"]: a connection's first request

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def p(self, q: float) -> float:
        return self.latency_ms[percentile_key(q)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            connections=int(data["connections"]),
            window_seconds=float(data["window_seconds"]),
            responses=int(data["responses"]),
            throughput=float(data["throughput"]),
            latency_ms={str(k): float(v) for k, v in data["latency_ms"].items()},
            errors={str(k): int(v) for k, v in data["errors"].items()},
            statuses={str(k): int(v) for k, v in data["statuses"].items()},
            client_cpu_seconds=float(data.get("client_cpu_seconds", 0.0)),
            first_request_timeouts=int(data.get("first_request_timeouts", 0)),
        )


@dataclass
class Recorder:
    """Collects outcomes as they happen; ``summary()`` turns them into figures.

    ``window_start``/``window_end`` are on the clock the caller passes in
    (``time.perf_counter()`` in the load generator)."""

    connections: int
    window_start: float
    window_end: float
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: Counter[ErrorKind] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    first_request_timeouts: int = 0

    def in_window(self, sent: float) -> bool:
        return self.window_start <= sent < self.window_end

    def response(self, sent: float, done: float, status: int) -> None:
        self.statuses[status] += 1
        if not 200 <= status < 300:
            self.errors[ErrorKind.STATUS] += 1
        elif self.in_window(sent):
            self.latencies.append(done - sent)

    def error(self, kind: ErrorKind, *, first_request: bool = False) -> None:
        if kind is ErrorKind.STATUS:
            raise ValueError("status errors are recorded by response()")
        self.errors[kind] += 1
        if kind is ErrorKind.TIMEOUT and first_request:
            self.first_request_timeouts += 1

    def summary(self, client_cpu_seconds: float = 0.0) -> Summary:
        window = self.window_end - self.window_start
        ordered = sorted(self.latencies)
        latency: dict[str, float] = {}
        if ordered:
            for q in PERCENTILES:
                latency[percentile_key(q)] = percentile(ordered, q) * 1000.0
            latency["max"] = ordered[-1] * 1000.0
            latency["mean"] = sum(ordered) / len(ordered) * 1000.0
        return Summary(
            connections=self.connections,
            window_seconds=window,
            responses=len(ordered),
            throughput=len(ordered) / window if window > 0 else 0.0,
            latency_ms=latency,
            errors={kind.value: self.errors[kind] for kind in ErrorKind},
            statuses={str(code): n for code, n in sorted(self.statuses.items())},
            client_cpu_seconds=client_cpu_seconds,
            first_request_timeouts=self.first_request_timeouts,
        )

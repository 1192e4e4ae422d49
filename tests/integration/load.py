"""A bounded, steady HTTP request stream for ingress tests and benchmarks.

Requests go only to 127.0.0.1. The stream runs at a fixed rate from a few
threads, records every outcome with its time, and stops by itself after
``seconds`` (or when ``stop()`` is called).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    at: float  # time.monotonic() when the request was sent
    ok: bool
    body: str = ""
    error: str = ""


@dataclass
class Stream:
    port: int
    rate: float = 100.0  # requests per second, all threads together
    seconds: float = 30.0
    threads: int = 4
    path: str = "/"
    timeout: float = 2.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> Stream:
        interval = self.threads / self.rate
        deadline = time.monotonic() + self.seconds
        url = f"http://127.0.0.1:{self.port}{self.path}"

        def work(offset: float) -> None:
            due = time.monotonic() + offset
            while not self._stop.is_set() and due < deadline:
                pause = due - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    return
                sent = time.monotonic()
                try:
                    with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                        body = resp.read().decode(errors="replace").strip()
                    outcome = Outcome(sent, True, body=body)
                except urllib.error.HTTPError as exc:
                    exc.close()  # it holds the response: free its socket
                    outcome = Outcome(sent, False, error=str(exc))
                except (OSError, urllib.error.URLError) as exc:
                    outcome = Outcome(sent, False, error=str(exc))
                with self._lock:
                    self.outcomes.append(outcome)
                due += interval

        for i in range(self.threads):
            thread = threading.Thread(target=work, args=(i * interval / self.threads,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=self.timeout + 5)
        with self._lock:
            return sorted(self.outcomes, key=lambda o: o.at)

    def wait(self) -> list[Outcome]:
        for thread in self._workers:
            thread.join(timeout=self.seconds + self.timeout + 5)
        return self.stop()


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok]


def last_failure(outcomes: list[Outcome]) -> float | None:
    failed = failures(outcomes)
    return failed[-1].at if failed else None

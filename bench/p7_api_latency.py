"""P7: p99 latency of GET one workload from `portway server`, vs the uvicorn floor.

A real `portway server` (its own process, a temporary PORTWAY_HOME with
SQLite, `--no-controller` unless `--controller`) on a free 127.0.0.1 port.
The script applies one workload through `POST /v1/apply` with the bootstrap
admin token, creates a viewer token for its namespace through
`POST /v1/tokens`, and fetches the workload once. The peers serve those exact
response bytes behind the same bearer check (bench/api_peer.py): a bare ASGI
app on uvicorn (the peer of the ratios: what any Python server on uvicorn pays
at least) and one FastAPI route (informational: the framework's share).

Load comes from bench/loadgen.py, a separate process: N closed-loop
keep-alive clients, `--warmup` s unmeasured then `--seconds` s measured.
Levels: 200 clients (`--rounds` rounds per side) and 1,000 clients
(`--rounds-1000` rounds per side); within a round the sides run one after the
other, in an order that rotates per round. Per run the table shows the
latency percentiles, requests/s, errors and the CPU the server and the load
generator used (in % of one core; the machine's cores are shared by both).

RESULT is the median over rounds of portway's p99 at 200 clients, in ms
(target 50). Printed above it: portway p99 / peer p99 and portway requests/s
/ peer requests/s at both levels, and the errors at 1,000 clients (target 0).

Usage: .venv/bin/python bench/p7_api_latency.py [--rounds N] [--rounds-1000 N]
           [--seconds S] [--warmup S] [--workers N] [--loop L] [--controller]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common as c
import loadstats as ls

NAME = "p7_api_get_p99_ms"
TARGET = 50.0
TARGET_ERRORS_1000 = 0
BENCH = Path(__file__).resolve().parent
WORKLOAD = "web"
SIDES = ("portway", "asgi", "fastapi")  # asgi is the peer of the ratios
PEER = "asgi"


@dataclass(frozen=True)
class Run:
    side: str
    clients: int
    round: int
    summary: ls.Summary
    server_cpu_seconds: float  # over the whole loadgen run, warm-up included
    elapsed: float  # seconds of that run

    @property
    def server_cpu(self) -> float:
        """% of one core."""
        return 100.0 * self.server_cpu_seconds / self.elapsed

    @property
    def client_cpu(self) -> float:
        """The load generator's, % of one core."""
        return 100.0 * self.summary.client_cpu_seconds / self.elapsed


# --- HTTP (set-up only; the load is loadgen's) ------------------------------------


def call(
    port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


def expect(
    port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> bytes:
    status, payload = call(port, method, path, token, body)
    if not 200 <= status < 300:
        raise c.BenchError(
            f"{method} {path} -> {status}: {payload.decode(errors='replace')[:2000]}"
        )
    return payload


def wait_http(
    port: int, path: str, token: str, deadline: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Until ``GET path`` answers 200, the process died, or ``deadline``."""
    while True:
        if proc.poll() is not None:
            raise c.BenchError(
                f"exited with status {proc.returncode} before answering; log:\n{tail(log)}"
            )
        with contextlib.suppress(OSError):
            if call(port, "GET", path, token)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise c.BenchError(f"127.0.0.1:{port}{path} does not answer 200; log:\n{tail(log)}")
        time.sleep(0.1)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def server_env(home: Path) -> dict[str, str]:
    """portway's environment for ``home``, importing this checkout's ``src`` (the
    venv may be shared with another checkout whose portway is installed in it)."""
    env = c.portway_env(home)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(c.REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


# --- processes --------------------------------------------------------------------------


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (uvicorn workers too), SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every process below it (uvicorn workers)."""
    total = 0.0
    for each in [pid, *c.descendants(pid)]:
        with contextlib.suppress(OSError):
            total += c.cpu_seconds(each)
    return total


def load(
    port: int, path: str, token_file: Path, clients: int, opts: argparse.Namespace, server_pid: int
) -> tuple[ls.Summary, float, float]:
    """One loadgen run: its summary, the server's CPU seconds over it, its seconds."""
    cmd = [
        str(c.PYTHON),
        str(BENCH / "loadgen.py"),
        "--url",
        f"http://127.0.0.1:{port}{path}",
        "--bearer-file",
        str(token_file),
        "--connections",
        str(clients),
        "--duration",
        str(opts.seconds),
        "--warmup",
        str(opts.warmup),
        "--timeout",
        str(opts.timeout),
    ]
    cpu_before, start = tree_cpu(server_pid), time.monotonic()
    proc = c.run(cmd, timeout=opts.seconds + opts.warmup + opts.timeout + 60)
    cpu = tree_cpu(server_pid) - cpu_before
    elapsed = time.monotonic() - start
    summary = ls.Summary.from_json(json.loads(proc.stdout))
    return summary, cpu, elapsed


# --- set-up ------------------------------------------------------------------------------


def workload_document(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Workload",
        "metadata": {"name": WORKLOAD, "namespace": namespace, "labels": {"app": WORKLOAD}},
        "spec": {
            "image": c.IMAGE,
            "command": list(c.HTTPD_COMMAND),
            "args": list(c.HTTPD_ARGS),
            "replicas": 1,
        },
    }


def seed(port: int, admin: str, namespace: str, home: Path) -> Path:
    """Apply the workload and make a viewer token for its namespace (file 0600)."""
    expect(
        port,
        "POST",
        "/v1/apply",
        admin,
        {"documents": [workload_document(namespace)], "file": "p7-bench.yaml"},
    )
    created = json.loads(
        expect(
            port,
            "POST",
            "/v1/tokens",
            admin,
            {
                "user": "p7-viewer",
                "name": "p7-bench",
                "ttlSeconds": 3600,
                "bindings": [{"role": "viewer", "namespace": namespace}],
            },
        )
    )
    token_file = home / "viewer.token"
    token_file.touch(mode=0o600)
    token_file.write_text(str(created["token"]))
    return token_file


# --- report ------------------------------------------------------------------------------


def print_runs(runs: list[Run]) -> None:
    print(
        f"{'clients':>7} {'round':>5} {'side':>8} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
        f" {'req/s':>8} {'errors':>6} {'srv cpu':>8} {'gen cpu':>8}"
    )
    for run in runs:
        s = run.summary
        cells = [s.latency_ms.get(k, float("nan")) for k in ("p50", "p90", "p99", "max")]
        print(
            f"{run.clients:>7} {run.round:>5} {run.side:>8}"
            + "".join(f" {v:>8.1f}" for v in cells)
            + f" {s.throughput:>8.0f} {s.error_count:>6}"
            + f" {run.server_cpu:>7.0f}% {run.client_cpu:>7.0f}%"
        )
    print("(ms; cpu in % of one core; errors over the whole run, warm-up included)")
    for run in runs:
        if run.summary.error_count:
            kinds = {k: n for k, n in run.summary.errors.items() if n}
            print(
                f"errors of {run.side} at {run.clients} clients, round {run.round}: {kinds}, "
                f"{run.summary.first_request_timeouts} timeouts of a connection's first request"
            )


def by(runs: list[Run], side: str, clients: int) -> list[Run]:
    return [r for r in runs if r.side == side and r.clients == clients]


def median_p99(runs: list[Run]) -> float:
    if any(r.summary.responses == 0 for r in runs):
        raise c.BenchError(
            f"{runs[0].side} at {runs[0].clients} clients: a run had no successful responses"
        )
    return c.median([r.summary.p(99) for r in runs])


def report(runs: list[Run], levels: list[tuple[int, int]], opts: argparse.Namespace) -> None:
    mode = "with its controller" if opts.controller else "--no-controller"
    print(
        f"P7 API latency: GET one workload from portway server ({mode}, "
        f"{opts.workers} worker(s), {opts.loop or 'default'} loop, SQLite) vs uvicorn peers; "
        "closed-loop keep-alive clients "
        f"from a separate process, {opts.warmup:g} s warm-up + {opts.seconds:g} s per run"
    )
    print_runs(runs)
    for clients, _ in levels:
        ours, peer = by(runs, "portway", clients), by(runs, PEER, clients)
        rate = c.median([r.summary.throughput for r in ours]) / c.median(
            [r.summary.throughput for r in peer]
        )
        print(
            f"{clients} clients: portway p99 {median_p99(ours):.1f} ms, {PEER} peer p99 "
            f"{median_p99(peer):.1f} ms: p99 ratio {median_p99(ours) / median_p99(peer):.2f}, "
            f"throughput ratio {rate:.3f}"
        )
    if any(clients == 1000 for clients, _ in levels):
        at_1000 = by(runs, "portway", 1000)
        kinds = {k.value: sum(r.summary.errors[k.value] for r in at_1000) for k in ls.ErrorKind}
        errors = sum(kinds.values())
        first = sum(r.summary.first_request_timeouts for r in at_1000)
        print(
            f"p7_api_errors_at_1000_clients {errors} target {TARGET_ERRORS_1000} {kinds}; "
            f"{first} of the timeouts were a connection's first request"
        )
    print(c.result_line(NAME, median_p99(by(runs, "portway", 200)), TARGET, decimals=1))


# --- main --------------------------------------------------------------------------------


@dataclass
class Setup:
    """Everything running for the measurements."""

    ports: dict[str, int]
    pids: dict[str, int]
    path: str
    token_file: Path


def start_server(
    home: Path, port: int, opts: argparse.Namespace, procs: list[subprocess.Popen[bytes]]
) -> str:
    """`portway server` on ``home``; returns the bootstrap admin token."""
    log = home / "server.log"
    cmd = [str(c.PORTWAY), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(opts.workers)]
    if opts.loop:
        cmd += ["--loop", opts.loop]
    if not opts.controller:
        cmd.append("--no-controller")
    c.log(f"starting {' '.join(cmd[1:])} (home {home})")
    server = spawn(cmd, server_env(home), log)
    procs.append(server)
    deadline = time.monotonic() + 60
    admin_file = home / "admin.token"
    while not admin_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise c.BenchError(f"the server wrote no {admin_file}; log:\n{tail(log)}")
        time.sleep(0.1)
    admin = admin_file.read_text().strip()
    wait_http(port, "/v1/whoami", admin, deadline, server, log)
    return admin


def start_peers(
    home: Path, setup: Setup, body: bytes, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The peers, serving ``body`` at ``setup.path``; checked to answer with it."""
    body_file = home / "body.json"
    body_file.write_bytes(body)
    token = setup.token_file.read_text()
    for side in SIDES[1:]:
        log = home / f"{side}.log"
        cmd = [str(c.PYTHON), str(BENCH / "api_peer.py"), "--kind", side]
        cmd += ["--port", str(setup.ports[side]), "--path", setup.path]
        cmd += ["--body-file", str(body_file), "--token-file", str(setup.token_file)]
        peer = spawn(cmd, c.portway_env(home), log)
        procs.append(peer)
        setup.pids[side] = peer.pid
        wait_http(setup.ports[side], setup.path, token, time.monotonic() + 30, peer, log)
        if call(setup.ports[side], "GET", setup.path, token)[1] != body:
            raise c.BenchError(f"the {side} peer does not serve portway's bytes")


def prepare(
    home: Path, namespace: str, opts: argparse.Namespace, procs: list[subprocess.Popen[bytes]]
) -> Setup:
    ports = {side: c.free_port() for side in SIDES}
    admin = start_server(home, ports["portway"], opts, procs)
    token_file = seed(ports["portway"], admin, namespace, home)
    path = f"/v1/namespaces/{namespace}/workloads/{WORKLOAD}"
    body = expect(ports["portway"], "GET", path, token_file.read_text())
    if json.loads(body).get("name") != WORKLOAD:
        raise c.BenchError(f"GET {path} returned another document: {body[:500]!r}")
    c.log(f"GET {path}: {len(body)} bytes; starting the peers")
    setup = Setup(ports, {"portway": procs[0].pid}, path, token_file)
    start_peers(home, setup, body, procs)
    return setup


def measure(setup: Setup, levels: list[tuple[int, int]], opts: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    for clients, rounds in levels:
        sides = list(SIDES) if clients == 200 else ["portway", PEER]
        for round_ in range(rounds):
            shift = round_ % len(sides)  # rotate the order so drift hits every side
            for side in sides[shift:] + sides[:shift]:
                summary, cpu, elapsed = load(
                    setup.ports[side], setup.path, setup.token_file, clients, opts, setup.pids[side]
                )
                runs.append(Run(side, clients, round_ + 1, summary, cpu, elapsed))
                p99 = summary.latency_ms.get("p99", float("nan"))
                c.log(
                    f"{clients} clients, {side}: p99 {p99:.1f} ms, "
                    f"{summary.throughput:.0f} req/s, {summary.error_count} errors"
                )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side at 200 clients (3)")
    parser.add_argument("--rounds-1000", type=int, default=1, help="rounds per side at 1,000 (1)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured s per run (4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s per run (1)")
    parser.add_argument("--timeout", type=float, default=5.0, help="client timeout, s (5)")
    parser.add_argument("--workers", type=int, default=1, help="portway server --workers (1)")
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), help="portway server --loop (its default)"
    )
    parser.add_argument(
        "--controller",
        action="store_true",
        help="run the server's controller too (the workload then runs on local Docker)",
    )
    opts = parser.parse_args()
    if opts.rounds < 1 or opts.rounds_1000 < 0 or opts.workers < 1:
        parser.error("--rounds and --workers must be >= 1, --rounds-1000 >= 0")
    if not c.PORTWAY.exists():
        c.fail(f"{c.PORTWAY} is missing; install portway into .venv (bash scripts/setup.sh)")
    with c.temp_dir("portway-p7api-check-") as scratch:
        if c.run([c.PORTWAY, "server", "--help"], env=server_env(scratch), check=False).returncode:
            c.fail(f"`portway server` is not available in this checkout ({c.REPO / 'src'})")
    if opts.controller:
        c.require_docker()
    levels = [(200, opts.rounds)] + ([(1000, opts.rounds_1000)] if opts.rounds_1000 else [])
    procs: list[subprocess.Popen[bytes]] = []
    with c.portway_sandbox("p7api") as (home, namespace):
        try:
            runs = measure(prepare(home, namespace, opts, procs), levels, opts)
        finally:
            # portway_sandbox then force-removes the replica --controller started
            for proc in reversed(procs):
                stop(proc)
    report(runs, levels, opts)
    return 0


if __name__ == "__main__":
    c.run_main(main)

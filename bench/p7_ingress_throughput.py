"""P7a: requests/s through portway's ingress ÷ straight to the replica.

One replica of `portway/busybox:latest` running `httpd` on the local Docker
target, published on an ephemeral 127.0.0.1 port, and exposed through
portway's ingress (HAProxy, HTTP mode, health checks on). Debian's `wrk`
drives both with the same settings, interleaved (the order alternating per
round): `wrk -t2 -c16 -d4s`. busybox httpd closes every connection, so the
direct side opens one connection per request; HAProxy keeps the client's
connection open and opens one per request to the replica. Every round starts
once the previous rounds' sockets have left TIME-WAIT (else the ephemeral
ports run out and the figures measure that).

RESULT is median(ingress requests/s) / median(direct requests/s), target
0.9 (higher is better).

Usage: .venv/bin/python bench/p7_ingress_throughput.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import common as c

NAME = "p7_ingress_throughput_ratio"
TARGET = 0.9

WORKLOAD = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {{name: web, namespace: {namespace}}}
spec:
  image: {image}
  command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
  replicas: 1
  ports: [{{name: http, containerPort: 8080}}]
  probes:
    readiness: {{http: {{port: 8080}}, periodSeconds: 1}}
  ingress: [{{port: http, listen: {listen}}}]
"""


def wrk(port: int, seconds: int) -> float:
    out = c.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        timeout=seconds + 60,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if match is None:
        raise c.BenchError(f"wrk printed no Requests/sec:\n{out}")
    if errors:
        c.log(f"wrk on {port}: {errors.group(0)}")
    return float(match.group(1))


def time_wait() -> int:
    """TCP sockets in TIME-WAIT on this host (/proc/net/sockstat)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("tw") + 1])
    return 0


def settle(limit: int = 2000, timeout: float = 90.0) -> int:
    """Wait until earlier rounds' closed connections have left TIME-WAIT.

    busybox httpd closes every connection, so a round opens one connection
    per request (through the engine's port proxy too): tens of thousands of
    sockets that linger 60 s in TIME-WAIT and exhaust the ephemeral ports
    (32768-60999) for the next round, which then measures the port shortage,
    not the path. Each round therefore starts from a drained host."""
    deadline = time.monotonic() + timeout
    while (count := time_wait()) > limit and time.monotonic() < deadline:
        time.sleep(1)
    return count


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (default 3)")
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration (default 4)")
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        c.fail("wrk is not installed: bash scripts/install.sh")
    c.require_docker()
    namespace = c.unique_id("p7a")
    direct: list[float] = []
    ingress: list[float] = []
    with c.temp_dir("portway-p7a-") as home:
        listen = c.free_port()
        path = Path(home) / "web.yaml"
        path.write_text(WORKLOAD.format(namespace=namespace, image=c.IMAGE, listen=listen))
        try:
            with c.portway_controller(home):
                c.portway("apply", "-f", str(path), home=home)
                deadline = time.monotonic() + 60
                while not answers(listen):
                    if time.monotonic() > deadline:
                        raise c.BenchError(f"the ingress on {listen} does not answer")
                    time.sleep(0.2)
                items = json.loads(
                    c.portway("get", "services", "-n", namespace, "-o", "json", home=home).stdout
                )["items"]
                replica_port = int(items[0]["endpoints"][0]["port"])
                wrk(replica_port, 1)  # warm-up, not counted
                wrk(listen, 1)
                for round_ in range(opts.rounds):
                    # alternate which side goes first, so drift hits both alike
                    sides = [("direct", replica_port), ("ingress", listen)]
                    for side, port in sides if round_ % 2 == 0 else sides[::-1]:
                        lingering = settle()
                        rate = wrk(port, opts.seconds)
                        (direct if side == "direct" else ingress).append(rate)
                        c.log(f"{side} {rate:.0f} req/s (TIME-WAIT before: {lingering})")
        finally:
            c.portway("delete", "web", "-n", namespace, home=home, check=False)
            c.remove_containers([c.namespace_label(namespace)])
            c.stop_ingress(home)
    print(f"P7a ingress throughput, {opts.rounds} rounds of wrk -t2 -c16 -d{opts.seconds}s")
    c.print_table(
        [
            c.Series("direct", direct, unit="req/s"),
            c.Series("ingress", ingress, unit="req/s"),
        ],
        index_header="round",
    )
    ratio = c.median(ingress) / c.median(direct)
    print(f"ingress/direct {ratio:.3f}")
    print(c.result_line(NAME, ratio, TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)

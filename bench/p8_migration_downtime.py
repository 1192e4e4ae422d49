"""P8: downtime of moving a stateful workload (a 100 MB volume) from Docker to
Podman: ``portway migrate`` against the manual path, in the same run.

Each run, in alternating order:

  portway  a workload on local-docker (busybox httpd on a fixed hostPort of
           127.0.0.1, HTTP readiness, a named volume with 100 MB of random
           data written once through ``portway exec``), a ``portway
           controller`` running; ``portway migrate --to local-podman``.
  manual   ``docker run -d -p 127.0.0.1:PORT:8080 -v VOL:/data`` (the same
           data written with ``docker exec``); then ``docker stop``,
           ``docker run --rm -v VOL:/data -v DIR:/out … tar -cf``,
           ``podman volume create`` + ``podman volume import``, ``podman
           run -d -p 127.0.0.1:PORT:8080 -v VOL:/data``.

Downtime is measured the same way on both sides: this process polls the
published port every 20 ms; it is the time from the last answer before the
gap to the first answer after it. portway copies the volume to Podman
while the old copy still serves (pre-copy, verified file by file), then
stops it and lists the stopped volume's metadata: if nothing changed since
the pre-copy, there is nothing left to snapshot or restore (else it takes
the stopped snapshot, every file's SHA-256, and restores it); the manual
path verifies nothing.

RESULT is the median ratio portway ÷ manual (target <= 1.0); the absolute
downtimes are printed above it.

Usage: .venv/bin/python bench/p8_migration_downtime.py [--runs N] [--megabytes M]
"""

from __future__ import annotations

import argparse
import threading
import time
import urllib.request
from pathlib import Path

import common as c

NAME = "p8_migration_downtime_ratio"
TARGET = 1.0
POLL = 0.02

WORKLOAD = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  image: {image}
  command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
  replicas: 1
  placement: {{targets: [local-docker]}}
  ports: [{{containerPort: 8080, hostPort: {port}}}]
  probes:
    readiness: {{http: {{port: 8080}}, periodSeconds: 0.2}}
  volumes:
    - {{name: data, type: named, mountPath: /data, retention: delete}}
"""


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class Gap:
    """Polls a port from a thread; the longest stretch without an answer,
    from the last answer before it to the first after it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.last_ok = 0.0
        self.longest = 0.0
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Gap:
        if not answers(self.port):
            raise c.BenchError(f"nothing answers on 127.0.0.1:{self.port} before the move")
        self.last_ok = time.perf_counter()
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.stop.is_set():
            if answers(self.port):
                now = time.perf_counter()
                self.longest = max(self.longest, now - self.last_ok)
                self.last_ok = now
            time.sleep(POLL)

    def wait_answer(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not answers(self.port):
            if time.monotonic() > deadline:
                raise c.BenchError(f"127.0.0.1:{self.port} did not answer after the move")
            time.sleep(POLL)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def fill(megabytes: int) -> list[str]:
    return ["sh", "-c", f"dd if=/dev/urandom of=/data/blob bs=1048576 count={megabytes} 2>&1"]


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(POLL)
    raise c.BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


def one_portway(home: Path, namespace: str, run: int, megabytes: int) -> tuple[float, str]:
    name = f"p8w{run}"
    port = c.free_port()
    path = home / f"{name}.yaml"
    path.write_text(WORKLOAD.format(name=name, namespace=namespace, image=c.IMAGE, port=port))
    c.portway("apply", "-f", str(path), home=home)
    c.portway("exec", name, "-n", namespace, "--", *fill(megabytes), home=home)
    with Gap(port) as gap:
        done = c.portway("migrate", name, "-n", namespace, "--to", "local-podman", home=home)
        gap.wait_answer(60)
        time.sleep(0.1)  # let the poller see the answer
    c.portway("delete", name, "-n", namespace, home=home)
    steps = " ".join(
        f"{line.split()[1]}={line.split()[2]}" for line in done.stdout.splitlines() if "] " in line
    )
    return gap.longest, steps


def one_manual(namespace: str, run: int, megabytes: int, work: Path) -> float:
    name = f"p8-manual-{namespace}-{run}"
    volume = f"{name}-data"
    port = c.free_port()
    label = f"{c.LABEL_NAMESPACE}={namespace}"
    c.run(
        ["docker", "run", "-d", "--name", name, "--label", label, "-v", f"{volume}:/data",
         "-p", f"127.0.0.1:{port}:8080", c.IMAGE, *c.HTTPD_COMMAND, *c.HTTPD_ARGS],
    )  # fmt: skip
    out = work / name
    out.mkdir()
    try:
        c.run(["docker", "exec", name, *fill(megabytes)])
        wait(lambda: answers(port), 60, "the manual container to answer")
        with Gap(port) as gap:
            c.run(["docker", "stop", name])
            c.run(
                ["docker", "run", "--rm", "-v", f"{volume}:/data", "-v", f"{out}:/out", c.IMAGE,
                 "sh", "-c", "tar -cf /out/volume.tar -C /data ."],
            )  # fmt: skip
            c.run(["podman", "volume", "create", volume])
            c.run(["podman", "volume", "import", volume, str(out / "volume.tar")])
            c.run(
                ["podman", "run", "-d", "--name", name, "--label", label, "-v", f"{volume}:/data",
                 "-p", f"127.0.0.1:{port}:8080", c.IMAGE, *c.HTTPD_COMMAND, *c.HTTPD_ARGS],
            )  # fmt: skip
            gap.wait_answer(60)
            time.sleep(0.1)
        return gap.longest
    finally:
        c.run(["docker", "rm", "-f", "-v", name], check=False)
        c.run(["podman", "rm", "-f", name], check=False)
        c.run(["docker", "volume", "rm", "-f", volume], check=False)
        c.run(["podman", "volume", "rm", "-f", volume], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per side (default 5)")
    parser.add_argument("--megabytes", type=int, default=100, help="volume data (default 100)")
    opts = parser.parse_args()
    if opts.runs < 1 or opts.megabytes < 1:
        c.fail("--runs and --megabytes must be at least 1")
    c.require_docker()
    c.require_engine(c.PODMAN)
    namespace = c.unique_id("p8")
    ours: list[float] = []
    manual: list[float] = []
    ratios: list[float] = []
    with c.temp_dir("portway-p8-") as home, c.temp_dir("portway-p8-manual-") as work:
        for engine in (c.DOCKER, c.PODMAN):  # a fresh home may list them already
            added = c.portway(
                "target", "add", engine.target, "--address", engine.address, home=home, check=False
            )
            if added.returncode != 0 and "already exists" not in added.stderr:
                raise c.BenchError(f"target add {engine.target}: {added.stderr.strip()}")
        try:
            with c.portway_controller(home):
                for run in range(opts.runs):
                    if run % 2:
                        mine, steps = one_portway(home, namespace, run, opts.megabytes)
                        theirs = one_manual(namespace, run, opts.megabytes, work)
                    else:
                        theirs = one_manual(namespace, run, opts.megabytes, work)
                        mine, steps = one_portway(home, namespace, run, opts.megabytes)
                    ours.append(mine)
                    manual.append(theirs)
                    ratios.append(mine / theirs)
                    c.log(f"run {run + 1}: portway {mine:.3f}s ({steps}), manual {theirs:.3f}s")
        finally:
            c.remove_containers([c.namespace_label(namespace)])
            c.remove_containers([c.namespace_label(namespace)], engine=c.PODMAN)
            for engine in ("docker", "podman"):  # a run cut short leaves its volume
                names = c.run(
                    [
                        engine,
                        "volume",
                        "ls",
                        "-q",
                        "--filter",
                        f"label={c.namespace_label(namespace)}",
                    ],
                    check=False,
                ).stdout.split()
                if names:
                    c.run([engine, "volume", "rm", "-f", *names], check=False)
    print(f"P8 migration downtime, {opts.megabytes} MB volume, Docker -> Podman, {opts.runs} runs")
    c.print_table(
        [c.Series("portway_migrate", ours), c.Series("manual", manual),
         c.Series("ratio", ratios, unit="x")],
        index_header="run",
    )  # fmt: skip
    print(f"portway downtime {c.median(ours):.3f}s, manual {c.median(manual):.3f}s (medians)")
    print(c.result_line(NAME, c.median(ratios), TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)

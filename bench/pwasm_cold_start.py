"""Cold start and memory of a wasm replica, against a busybox container.

    .venv/bin/python bench/pwasm_cold_start.py [--rounds N] [--quick]

Each round runs, in a rotating order:

- **wasm_cached**: the wasm driver (in this process, warm imports) creates and
  starts a replica of the ``tick`` test module (prints "tick 1" at once, then
  a line every 100 ms) whose compiled module is in the cache; the clock runs
  until its first output line is in the log. The replica's worker RSS is then
  read through the driver's ``stats`` (the worker is a Python process running
  wasmtime), and the replica destroyed (untimed).
- **wasm_nocache**: the same after deleting the compiled-module cache, so
  ``create`` compiles the module again (Cranelift) before the worker starts.
- **docker_echo** (the peer): ``docker run --name X portway/busybox:latest echo
  hello`` until it exits (its output has been printed by then); removal untimed.
  Then, untimed, ``docker run -d ... sleep 30`` for memory: the container's
  cgroup memory (``memory.usage_in_bytes`` minus inactive file pages, what
  ``docker stats`` shows) plus the RSS of its containerd-shim process, the
  per-container cost the engine adds.

RESULT = median(wasm_cached) in milliseconds, named ``wasm_cold_start_ms``.
The ratios to the peer are printed too. Everything runs on a temporary state
directory and uniquely named containers, removed on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import common as c
from portway.conformance import wasm_modules
from portway.drivers.base import Handle, ReplicaRequest
from portway.drivers.wasm import WasmDriver
from portway.spec.model import WorkloadSpec

TARGET_MS = 300.0  # a Python worker's start (interpreter + wasmtime import) is most of it
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


def request(namespace: str, index: int) -> ReplicaRequest:
    spec = WorkloadSpec.model_validate({"image": "bench/tick:1", "isolation": "wasm"})
    return ReplicaRequest(namespace, "tick", index, 1, spec.template_hash(), spec)


def wasm_start(driver: WasmDriver, namespace: str, index: int) -> tuple[float, int, Handle]:
    """Seconds from create to the first output line, and the worker's RSS."""
    began = time.perf_counter()
    handle = driver.create(request(namespace, index))
    driver.start(handle)
    while True:
        if any(True for _ in driver.logs(handle, tail=1)):
            elapsed = time.perf_counter() - began
            break
        if time.perf_counter() - began > 30:
            raise c.BenchError(f"{handle.name} printed nothing in 30s: {driver.inspect(handle)}")
        time.sleep(0.001)
    return elapsed, driver.stats(handle).memory_bytes, handle


def container_memory(name: str) -> tuple[int, int]:
    """(cgroup memory without inactive file pages, containerd-shim RSS) in bytes."""
    cid = c.run(["docker", "inspect", "-f", "{{.Id}}", name]).stdout.strip()
    pid = int(c.run(["docker", "inspect", "-f", "{{.State.Pid}}", name]).stdout.strip())
    group = CGROUP_MEMORY / "docker" / cid
    if not group.is_dir():
        raise c.BenchError(f"no cgroup v1 memory directory for {name} at {group}")
    usage = int((group / "memory.usage_in_bytes").read_text())
    for line in (group / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "total_inactive_file":
            usage -= int(value)
    shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # ppid
    rss_pages = int(Path(f"/proc/{shim}/statm").read_text().split()[1])
    return usage, rss_pages * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="4 rounds")
    args = parser.parse_args()
    rounds = 4 if args.quick else args.rounds
    c.require_docker()
    namespace = c.unique_id("bench-pwasm")
    containers: list[str] = []
    cached: list[float] = []
    nocache: list[float] = []
    docker: list[float] = []
    wasm_rss: list[float] = []
    docker_mem: list[float] = []
    docker_shim: list[float] = []
    with c.temp_dir("portway-bench-wasm-") as tmp:
        driver = WasmDriver("bench-wasm", f"wasm://{tmp / 'state'}")
        source = tmp / "tick.wat"
        source.write_text(wasm_modules.TICK)
        driver.import_artifact("bench/tick:1", source)
        index = 0

        def run_wasm(samples: list[float], *, drop_cache: bool) -> None:
            nonlocal index
            if drop_cache:
                shutil.rmtree(driver.cache, ignore_errors=True)
            seconds, rss, handle = wasm_start(driver, namespace, index)
            index += 1
            samples.append(seconds * 1000)
            if not drop_cache:  # the same worker either way: one figure per round
                wasm_rss.append(rss / 2**20)
            driver.destroy(handle)

        def run_docker() -> None:
            name = f"{namespace}-{len(containers)}"
            containers.append(name)
            seconds, proc = c.timed(["docker", "run", "--name", name, c.IMAGE, "echo", "hello"])
            if proc.stdout.strip() != "hello":
                raise c.BenchError(f"docker run printed {proc.stdout!r}")
            docker.append(seconds * 1000)
            c.run(["docker", "rm", "-f", name])
            sleeper = f"{name}-mem"
            containers.append(sleeper)
            c.run(["docker", "run", "-d", "--name", sleeper, c.IMAGE, "sleep", "30"])
            time.sleep(0.3)  # let it settle, as the wasm worker has by its first line
            usage, shim = container_memory(sleeper)
            docker_mem.append(usage / 2**20)
            docker_shim.append(shim / 2**20)
            c.run(["docker", "rm", "-f", sleeper])

        steps = [
            lambda: run_wasm(cached, drop_cache=False),
            lambda: run_wasm(nocache, drop_cache=True),
            run_docker,
        ]
        try:
            c.log("warm-up round (not counted)")
            for step in steps:
                step()
            for series in (cached, nocache, docker, wasm_rss, docker_mem, docker_shim):
                series.clear()
            for number in range(rounds):
                c.log(f"round {number + 1}/{rounds}")
                shift = number % len(steps)
                for step in steps[shift:] + steps[:shift]:
                    step()
        finally:
            for status in driver.list_owned({c.LABEL_NAMESPACE: namespace}):
                driver.destroy(status.handle)
            for name in containers:
                c.run(["docker", "rm", "-f", name], check=False)
    print(f"wasmtime {driver.fingerprint().version}, docker {c.docker_server_version()}")
    c.print_table(
        [
            c.Series("wasm_cached", cached, "ms"),
            c.Series("wasm_nocache", nocache, "ms"),
            c.Series("docker_echo", docker, "ms"),
        ],
        index_header="round",
    )
    print()
    c.print_table(
        [
            c.Series("wasm_worker_rss", wasm_rss, "MiB"),
            c.Series("busybox_cgroup", docker_mem, "MiB"),
            c.Series("busybox_shim_rss", docker_shim, "MiB"),
        ],
        index_header="round",
    )
    print()
    wasm_ms = c.median(cached)
    print(f"cold start: cached/docker {wasm_ms / c.median(docker):.3f}, ", end="")
    print(f"nocache/docker {c.median(nocache) / c.median(docker):.3f}")
    container = c.median(docker_mem) + c.median(docker_shim)
    print(
        f"memory per replica: wasm worker {c.median(wasm_rss):.1f} MiB vs busybox container "
        f"{container:.1f} MiB (cgroup + shim), ratio {c.median(wasm_rss) / container:.2f}"
    )
    print(c.result_line("wasm_cold_start_ms", wasm_ms, TARGET_MS, decimals=1))
    return 0


if __name__ == "__main__":
    c.run_main(main)

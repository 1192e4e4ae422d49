"""Runtime handlers and isolation tiers from what an engine reports, with no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import RuntimeHandler
from portway.drivers.runtime_handlers import (
    SANDBOX_OVERHEAD_MEMORY,
    Runtime,
    TierRefused,
    docker_runtimes,
    extension_conflict,
    handlers_for,
    is_gvisor,
    parse_podman_conf,
    podman_conf_files,
    podman_runtimes,
    read_podman_conf,
    runtime_for,
    tier_features,
)
from portway.spec.model import Isolation

# GET /info of this project's dockerd (runsc configured by scripts/engines.sh)
DOCKER_INFO = {
    "Runtimes": {
        "runc": {"path": "runc"},
        "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]},
    },
    "DefaultRuntime": "runc",
}


def tiers(handlers: tuple[RuntimeHandler, ...]) -> dict[str, str]:
    return {h.tier: h.handler for h in handlers}


def test_docker_info_with_runsc_offers_the_sandboxed_tier() -> None:
    default, runtimes = docker_runtimes(DOCKER_INFO)
    assert default == "runc"
    assert Runtime("runsc", "/usr/bin/runsc", ("--network=host",)) in runtimes
    handlers = handlers_for(default, runtimes)
    assert tiers(handlers) == {"standard": "runc", "sandboxed": "runsc"}
    sandboxed = next(h for h in handlers if h.tier == "sandboxed")
    assert sandboxed.overhead_memory == SANDBOX_OVERHEAD_MEMORY > 0
    assert sandboxed.overhead_cpu > 0
    assert Feature.ISOLATION_SANDBOXED in tier_features(handlers)


def test_docker_info_without_runsc_never_claims_the_sandboxed_tier() -> None:
    info = {"Runtimes": {"runc": {"path": "runc"}, "crun": {"path": "/usr/bin/crun"}}}
    handlers = handlers_for(*docker_runtimes(info))
    assert tiers(handlers) == {"standard": "runc"}  # no DefaultRuntime: Docker's is runc
    assert tier_features(handlers) == {Feature.ISOLATION_STANDARD}
    assert tier_features(handlers_for(*docker_runtimes({}))) == {Feature.ISOLATION_STANDARD}


@pytest.mark.parametrize(
    ("runtime", "gvisor"),
    [
        (Runtime("gvisor", "/opt/bin/wrapper"), True),  # by name
        (Runtime("sandbox", "/usr/local/bin/runsc"), True),  # by binary
        (Runtime("secure", "/usr/local/lib/portway/runsc-hostnet"), True),  # a wrapper
        (Runtime("secure", "/usr/bin/env", ("runsc", "--debug")), True),  # by its arguments
        (Runtime("gv", "io.containerd.runsc.v1"), True),  # a containerd shim type
        (Runtime("runc", "runc"), False),
        (Runtime("crun", "/usr/bin/crun", ("--systemd-cgroup",)), False),
        (Runtime("runscary", "/usr/bin/runscary"), False),  # a word, not a prefix
    ],
)
def test_gvisor_is_recognised_by_name_binary_or_wrapper(runtime: Runtime, gvisor: bool) -> None:
    assert is_gvisor(runtime) is gvisor


def test_a_wrapper_runtime_is_the_sandboxed_handler_and_runsc_is_preferred() -> None:
    info = {
        "Runtimes": {
            "runc": {"path": "runc"},
            "secure": {"path": "/usr/bin/env", "runtimeArgs": ["runsc"]},
        }
    }
    assert tiers(handlers_for(*docker_runtimes(info))) == {
        "standard": "runc",
        "sandboxed": "secure",
    }
    both = [Runtime("a-gvisor", "/x/runsc"), Runtime("runsc", "/usr/bin/runsc"), Runtime("runc")]
    assert tiers(handlers_for("runc", both))["sandboxed"] == "runsc"


def test_a_gvisor_default_runtime_does_not_become_the_standard_tier() -> None:
    runtimes = (Runtime("runc", "runc"), Runtime("runsc", "/usr/bin/runsc"))
    assert tiers(handlers_for("runsc", runtimes)) == {"standard": "runc", "sandboxed": "runsc"}
    assert tiers(handlers_for("runsc", runtimes[1:])) == {"sandboxed": "runsc"}


# containers.conf as scripts/engines-podman.sh writes it, and an earlier file
PORTWAY_CONF = """
[containers]
init_path = "/usr/bin/catatonit"

[engine]
runtime = "runc"

[engine.runtimes]
runsc = ["/usr/local/lib/portway/runsc-hostnet"]
"""
SYSTEM_CONF = """
[engine]
runtime = "crun"

[engine.runtimes]
#runsc = ["/usr/bin/runsc"]
kata = ["/usr/bin/kata-runtime"]
"""


def test_podman_conf_later_files_override_and_tables_merge() -> None:
    conf = parse_podman_conf([("system", SYSTEM_CONF), ("drop-in", PORTWAY_CONF)])
    assert conf.default == "runc"
    assert conf.runtimes is not None
    assert conf.runtimes["runsc"] == ("/usr/local/lib/portway/runsc-hostnet",)
    assert conf.runtimes["kata"] == ("/usr/bin/kata-runtime",)
    # Podman's compiled-in list of runc binaries stays when no file sets it
    assert "/usr/bin/runc" in conf.runtimes["runc"]


def test_podman_runtimes_keep_only_existing_binaries_first_match_wins() -> None:
    conf = parse_podman_conf([("drop-in", PORTWAY_CONF)])
    present = {"/usr/local/lib/portway/runsc-hostnet", "/usr/sbin/runc", "/usr/bin/runc"}
    runtimes = podman_runtimes(conf, exists=present.__contains__)
    assert runtimes == (
        Runtime("runc", "/usr/bin/runc"),
        Runtime("runsc", "/usr/local/lib/portway/runsc-hostnet"),
    )
    assert tiers(handlers_for("runc", runtimes)) == {"standard": "runc", "sandboxed": "runsc"}
    # the runsc binary is missing: the tier is not offered
    nothing = podman_runtimes(conf, exists={"/usr/bin/runc"}.__contains__)
    assert tier_features(handlers_for("runc", nothing)) == {Feature.ISOLATION_STANDARD}


def test_podman_conf_that_is_not_toml_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"/etc/containers/containers.conf: not valid TOML"):
        parse_podman_conf([("/etc/containers/containers.conf", "[engine\nruntime=")])


def test_podman_conf_files_in_podman_order_and_a_bad_file_is_skipped(tmp_path: Path) -> None:
    system = tmp_path / "usr-share.conf"
    override = tmp_path / "etc.conf"
    drop_ins = tmp_path / "containers.conf.d"
    drop_ins.mkdir()
    system.write_text(SYSTEM_CONF)
    (drop_ins / "50-portway.conf").write_text(PORTWAY_CONF)
    (drop_ins / "10-broken.conf").write_text("[engine\n")
    (drop_ins / "90-notes.txt").write_text("not a conf file")
    files = podman_conf_files(system, override, drop_ins)
    assert files == [system, drop_ins / "10-broken.conf", drop_ins / "50-portway.conf"]
    conf = read_podman_conf(files)
    assert conf.default == "runc"
    assert conf.runtimes is not None
    assert conf.runtimes["runsc"] == ("/usr/local/lib/portway/runsc-hostnet",)


SANDBOXED_TARGET = (RuntimeHandler("standard", "runc"), RuntimeHandler("sandboxed", "runsc"))


def test_runtime_for_each_tier() -> None:
    assert runtime_for(Isolation.STANDARD, None, SANDBOXED_TARGET, "docker") is None
    assert runtime_for(Isolation.STANDARD, "crun", SANDBOXED_TARGET, "docker") == "crun"
    assert runtime_for(Isolation.SANDBOXED, None, SANDBOXED_TARGET, "docker") == "runsc"
    assert runtime_for(Isolation.SANDBOXED, "runsc", SANDBOXED_TARGET, "docker") == "runsc"
    with pytest.raises(TierRefused, match="isolation 'microvm' is not offered by the podman"):
        runtime_for(Isolation.MICROVM, None, SANDBOXED_TARGET, "podman")
    with pytest.raises(TierRefused, match="isolation 'wasm' is not offered"):
        runtime_for(Isolation.WASM, None, SANDBOXED_TARGET, "docker")
    with pytest.raises(TierRefused, match="no runsc runtime configured"):
        runtime_for(Isolation.SANDBOXED, None, SANDBOXED_TARGET[:1], "docker")


def test_an_extension_may_not_take_a_sandboxed_replica_out_of_its_sandbox() -> None:
    problem = extension_conflict(Isolation.SANDBOXED, "runc", SANDBOXED_TARGET, "docker")
    assert problem is not None
    assert "extensions.docker.runtime 'runc' contradicts isolation 'sandboxed'" in problem
    assert "runs on runtime 'runsc'" in problem
    with pytest.raises(TierRefused, match="contradicts isolation 'sandboxed'"):
        runtime_for(Isolation.SANDBOXED, "runc", SANDBOXED_TARGET, "docker")
    assert extension_conflict(Isolation.SANDBOXED, "runsc", SANDBOXED_TARGET, "docker") is None
    assert extension_conflict(Isolation.STANDARD, "runsc", SANDBOXED_TARGET, "docker") is None


def test_podman_sandbox_service_socket_from_the_address() -> None:
    from portway.drivers.podman import podman_base_url, sandbox_socket

    plain = "podman:///run/podman/podman.sock"
    assert sandbox_socket(plain) == "/run/podman/podman-sandboxed.sock"
    explicit = "podman:///run/podman/podman.sock?sandbox=/run/other/gvisor.sock"
    assert sandbox_socket(explicit) == "/run/other/gvisor.sock"
    assert podman_base_url(explicit) == "unix:///run/podman/podman.sock"


def test_a_sandboxed_replica_gets_no_pids_limit() -> None:
    from portway.drivers.runtime_handlers import pids_limit
    from portway.spec.model import WorkloadSpec

    def spec(isolation: str) -> WorkloadSpec:
        return WorkloadSpec.model_validate(
            {"image": "portway/busybox:latest", "isolation": isolation, "resources": {"pids": 16}}
        )

    assert pids_limit(spec("standard")) == 16
    assert pids_limit(spec("sandboxed")) is None

"""The containerd driver's sandboxed-tier helpers, without an engine: the runc
shim's Options message (checked against protobuf's own encoder, from a
descriptor written out of containerd 1.6's oci.proto), the handler a
container's runtime options select, and ``runsc ps`` parsing."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from portway.drivers.containerd import _sandbox

# first: the package selects protobuf's pure-Python implementation, which its
# stubs need, before anything imports protobuf
from portway.drivers.runtime_handlers import GVISOR_GAPS


def _runc_options_class() -> Any:
    """containerd.runc.v1.Options as protobuf builds it from a descriptor (the
    fields of containerd 1.6's runtime/v2/runc/options/oci.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    kinds = descriptor_pb2.FieldDescriptorProto
    fields = [
        ("no_pivot_root", 1, kinds.TYPE_BOOL),
        ("shim_cgroup", 3, kinds.TYPE_STRING),
        ("io_uid", 4, kinds.TYPE_UINT32),
        ("binary_name", 6, kinds.TYPE_STRING),
        ("root", 7, kinds.TYPE_STRING),
        ("systemd_cgroup", 9, kinds.TYPE_BOOL),
    ]
    proto = descriptor_pb2.FileDescriptorProto(
        name="portway_test_runc_options.proto", package="containerd.runc.v1", syntax="proto3"
    )
    message = proto.message_type.add(name="Options")
    for name, number, kind in fields:
        message.field.add(name=name, number=number, type=kind, label=kinds.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("containerd.runc.v1.Options"))


@pytest.mark.parametrize(
    "binary", ["/usr/local/lib/portway/runsc-hostnet", "runsc", "/" + "x" * 300, "/ü/runsc"]
)
def test_encoding_matches_protobuf(binary: str) -> None:
    options = _runc_options_class()
    assert _sandbox.encode_runc_options(binary) == options(binary_name=binary).SerializeToString()
    assert _sandbox.decode_binary_name(_sandbox.encode_runc_options(binary)) == binary


def test_decoding_skips_other_fields() -> None:
    options = _runc_options_class()
    full = options(
        no_pivot_root=True,
        shim_cgroup="/shim",
        io_uid=70000,
        binary_name="/opt/runsc",
        root="/run/x",
        systemd_cgroup=True,
    ).SerializeToString()
    assert _sandbox.decode_binary_name(full) == "/opt/runsc"
    assert _sandbox.decode_binary_name(options(root="/run/x").SerializeToString()) == ""
    assert _sandbox.decode_binary_name(b"") == ""


@pytest.mark.parametrize("broken", [b"\x32\x05abc", b"\x32", b"\x08\xff", b"\x33"])
def test_decoding_refuses_malformed(broken: bytes) -> None:
    with pytest.raises(ValueError):
        _sandbox.decode_binary_name(broken)


def test_handler_of_runtime_options() -> None:
    url = _sandbox.RUNC_OPTIONS_TYPE_URL
    encode = _sandbox.encode_runc_options
    assert _sandbox.handler_of("", b"") == "runc"  # no options: the shim's runc
    assert _sandbox.handler_of(url, encode(_sandbox.DEFAULT_WRAPPER)) == "runsc"
    assert _sandbox.handler_of(url, encode("/usr/bin/runsc")) == "runsc"
    assert _sandbox.handler_of(url, encode("/usr/sbin/runc")) == "runc"
    assert _sandbox.handler_of(url, encode("/opt/crun")) == "crun"
    assert _sandbox.handler_of(url, b"\x32") == "runc"  # unreadable: the default
    assert _sandbox.handler_of("other.Options", encode("/usr/bin/runsc")) == "runc"


def test_wrapper_found_only_when_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper = tmp_path / "runsc-hostnet"
    monkeypatch.setenv(_sandbox.WRAPPER_ENV, str(wrapper))
    assert _sandbox.wrapper_path() == wrapper
    assert _sandbox.find_wrapper() is None  # missing
    wrapper.write_text('#!/bin/sh\nexec runsc --network=host "$@"\n')
    assert _sandbox.find_wrapper() is None  # not executable
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    assert _sandbox.find_wrapper() == wrapper
    url = _sandbox.RUNC_OPTIONS_TYPE_URL
    # a wrapper under another name is recognised by its configured path
    assert _sandbox.handler_of(url, _sandbox.encode_runc_options(str(wrapper))) == "runsc"
    monkeypatch.delenv(_sandbox.WRAPPER_ENV)
    assert _sandbox.wrapper_path() == Path(_sandbox.DEFAULT_WRAPPER)
    assert os.access(wrapper, os.X_OK)


PS = """\
UID       PID       PPID      C         TTY       STIME     TIME      CMD
0         1         0         0         ?         16:47     0s        init
0         2         1         0         ?         16:47     0s        sleep
0         3         0         1         ?         16:47     0s        sh
0         4         3         1         ?         16:47     10ms      sleep
0         5         4         1         ?         16:47     10ms      my prog
0         6         0         0         ?         16:48     0s        cat
0         9         0         0         ?         16:49     0s        later
"""


def test_parse_ps_and_exec_tree() -> None:
    found = _sandbox.parse_ps(PS)
    assert [p.pid for p in found] == [1, 2, 3, 4, 5, 6, 9]
    assert found[4] == _sandbox.SandboxProcess(5, 4, "my prog")
    assert _sandbox.newest_pid(found) == 9
    assert _sandbox.newest_pid([]) == 0
    # the exec that started while the newest pid went from 2 to 5: sh and its children
    assert _sandbox.exec_tree(found, 2, 5) == [3, 4, 5]
    # another exec (cat, pid 6) started later is left alone; so is the init
    assert _sandbox.exec_tree(found, 5, 6) == [6]
    assert _sandbox.exec_tree(found, 0, 1) == []
    assert _sandbox.exec_tree(found, 9, 9) == []  # the exec's process had already gone
    assert _sandbox.parse_ps("") == []


def test_adapt_runtime_spec_drops_only_the_pids_limit() -> None:
    spec: dict[str, Any] = {
        "linux": {
            "resources": {
                "memory": {"limit": 64 << 20},
                "cpu": {"quota": 50000, "period": 100000},
                "pids": {"limit": 8},
            }
        }
    }
    _sandbox.adapt_runtime_spec(spec)
    assert spec["linux"]["resources"] == {
        "memory": {"limit": 64 << 20},
        "cpu": {"quota": 50000, "period": 100000},
    }
    empty: dict[str, Any] = {}
    _sandbox.adapt_runtime_spec(empty)  # nothing to drop: no error
    assert empty == {}


def test_tier_gaps_say_why() -> None:
    assert GVISOR_GAPS
    for feature, reason in GVISOR_GAPS.items():
        assert len(reason) > 40, feature

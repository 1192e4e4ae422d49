"""Settings that weaken isolation (privileged, the host's namespaces, no
seccomp filter, sysctls) and runAsNonRoot, each proved by what the replica
can see or do, not by what the engine says it set.

Host namespaces are compared with the test process's own (``readlink
/proc/self/ns/<kind>``): the suite runs on the engine's host, as its
127.0.0.1-only traffic rule already requires. Nothing here changes the host:
the privileged case mounts a tmpfs in the replica's own mount namespace and
sets ip_forward in its own network namespace.
"""

from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path

from portway.capabilities.vocabulary import Feature
from portway.errors import DriverError, PermanentDriverError

from .case import LOOPBACK, Context, case
from .failures import CaseFailed

CAP_SYS_ADMIN_BIT = 21
#: host devices a default replica never gets; a privileged one sees them
_HOST_ONLY_DEVICES = ("/dev/kmsg", "/dev/loop-control", "/dev/fuse", "/dev/mem")
_SYSCTL = "net.ipv4.ip_unprivileged_port_start"
_SYSCTL_VALUE = "80"


def _host_namespace(kind: str) -> str:
    """e.g. ``pid:[4026531836]``: the namespace this process (on the host) is in."""
    return str(Path(f"/proc/self/ns/{kind}").readlink())


def _same_namespace_script(kind: str) -> str:
    host = _host_namespace(kind)
    return (
        f'ns=$(readlink /proc/self/ns/{kind}); echo "{kind}: replica $ns, host {host}"; '
        f'[ "$ns" = "{host}" ]'
    )


@case(
    "security.privileged",
    "privileged: CAP_SYS_ADMIN, host devices, root may mount, /proc/sys is writable",
    features=(Feature.SECURITY_PRIVILEGED,),
)
def privileged(ctx: Context) -> None:
    device = next((d for d in _HOST_ONLY_DEVICES if Path(d).exists()), None)
    device_check = f"[ -e {device} ] || exit 5; " if device else ""
    script = (
        'cap=$(sed -n "s/^CapEff:[[:space:]]*//p" /proc/self/status); echo "CapEff=$cap"; '
        f"[ $(( 0x$cap & {1 << CAP_SYS_ADMIN_BIT} )) -ne 0 ] || exit 3; "
        "mkdir -p /pw-mnt && mount -t tmpfs pw /pw-mnt 2>&1 || exit 4; "
        + device_check
        + "echo 1 > /proc/sys/net/ipv4/ip_forward 2>&1 || exit 6; exit 0"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"privileged": True}},
        0,
        f"privileged (exit 3: no CAP_SYS_ADMIN; 4: mount refused; "
        f"5: host device {device} missing; 6: /proc/sys read-only)",
    )


@case(
    "security.unprivileged_default",
    "without privileged: mount is refused and /proc/sys is read-only",
    features=(Feature.SECURITY_PRIVILEGED,),
)
def unprivileged_default(ctx: Context) -> None:
    # the other half of the claim: the effects above come from the setting
    script = (
        "mkdir -p /pw-mnt && mount -t tmpfs pw /pw-mnt 2>&1 && exit 3; "
        "echo 1 > /proc/sys/net/ipv4/ip_forward 2>&1 && exit 4; exit 0"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script]},
        0,
        "unprivileged replica (exit 3: mount allowed; 4: /proc/sys writable)",
    )


@case(
    "security.host_pid",
    "hostPid: the replica is in the host's PID namespace and sees this test process",
    features=(Feature.SECURITY_HOST_PID,),
)
def host_pid(ctx: Context) -> None:
    script = (
        _same_namespace_script("pid") + f" || exit 3; [ -d /proc/{os.getpid()} ] || exit 4; "
        # PID 1 is the host's init, not the replica's command or its init
        "tr '\\0' ' ' < /proc/1/cmdline; echo; "
        f'[ "$(tr -d "\\0" < /proc/1/cmdline)" = {shlex.quote(_host_pid1())} ] || exit 5'
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"hostPid": True}},
        0,
        "hostPid (exit 3: other PID namespace; 4: test process not visible; "
        "5: PID 1 is not the host's)",
    )


def _host_pid1() -> str:
    return Path("/proc/1/cmdline").read_bytes().replace(b"\0", b"").decode(errors="replace")


@case(
    "security.host_ipc",
    "hostIpc: the replica is in the host's IPC namespace",
    features=(Feature.SECURITY_HOST_IPC,),
)
def host_ipc(ctx: Context) -> None:
    ctx.expect_exit(
        {"command": ["sh", "-c", _same_namespace_script("ipc")], "security": {"hostIpc": True}},
        0,
        "hostIpc (exit 1: other IPC namespace)",
    )


@case(
    "security.host_network",
    "hostNetwork: the replica is in the host's network namespace and sees a socket "
    "this test listens on at 127.0.0.1",
    features=(Feature.SECURITY_HOST_NETWORK,),
)
def host_network(ctx: Context) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        # /proc/net/tcp: local address 0100007F:<port hex>, state 0A = LISTEN;
        # reading it sends no traffic anywhere
        wanted = f"0100007F:{port:04X}"
        script = (
            _same_namespace_script("net") + " || exit 3; "
            f"grep -q ' {wanted} 00000000:0000 0A ' /proc/net/tcp || exit 4"
        )
        ctx.expect_exit(
            {"command": ["sh", "-c", script], "security": {"hostNetwork": True}},
            0,
            f"hostNetwork (exit 3: other network namespace; 4: the test's listener on "
            f"{LOOPBACK}:{port} is not visible)",
        )


@case(
    "security.seccomp_unconfined",
    "seccompProfile Unconfined: no filter (Seccomp: 0) and unshare(CLONE_NEWUSER), which "
    "Docker's and portway's containerd default filters refuse, succeeds",
    features=(Feature.SECURITY_SECCOMP_UNCONFINED,),
)
def seccomp_unconfined(ctx: Context) -> None:
    script = (
        "grep '^Seccomp:' /proc/self/status; "
        "grep -q '^Seccomp:[[:space:]]*0$' /proc/self/status || exit 3; "
        "unshare -U true 2>&1 || exit 4"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"seccompProfile": "Unconfined"}},
        0,
        "seccomp unconfined (exit 3: a filter is installed; 4: unshare -U refused)",
    )


@case(
    "security.seccomp_default",
    "seccompProfile RuntimeDefault: a filter is installed (Seccomp: 2)",
    features=(Feature.SECURITY_SECCOMP_UNCONFINED,),
)
def seccomp_default(ctx: Context) -> None:
    # The other half of the claim: Unconfined differs from the default. What
    # the default refuses differs by engine (Podman's allows unshare -U).
    script = (
        "grep '^Seccomp:' /proc/self/status; grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status"
    )
    ctx.expect_exit({"command": ["sh", "-c", script]}, 0, "default seccomp filter installed")


@case(
    "security.sysctls",
    f"sysctls: {_SYSCTL}={_SYSCTL_VALUE} is what the replica reads",
    features=(Feature.SECURITY_SYSCTLS,),
)
def sysctls(ctx: Context) -> None:
    script = f'v=$(sysctl -n {_SYSCTL}); echo "{_SYSCTL}=$v"; [ "$v" = {_SYSCTL_VALUE} ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"sysctls": {_SYSCTL: _SYSCTL_VALUE}}},
        0,
        f"sysctl {_SYSCTL}",
    )


@case(
    "security.run_as_non_root_refused",
    "runAsNonRoot with an image that runs as root (no User) is refused at create",
    features=(Feature.SECURITY_RUN_AS_NON_ROOT,),
)
def run_as_non_root_refused(ctx: Context) -> None:
    for security in ({"runAsNonRoot": True}, {"runAsNonRoot": True, "user": "0"}):
        try:
            handle = ctx.create({"command": ["true"], "security": security})
        except PermanentDriverError as exc:
            if "runAsNonRoot" not in str(exc):
                raise CaseFailed(
                    f"create with {security} was refused, but not for runAsNonRoot: {exc}"
                ) from None
            continue
        except DriverError as exc:
            raise CaseFailed(
                f"create with {security} raised {type(exc).__name__}, not a permanent "
                f"refusal: {exc}"
            ) from None
        raise CaseFailed(f"create with {security} (the replica runs as root) made {handle.name}")


@case(
    "security.run_as_non_root_uid",
    'runAsNonRoot with user "1000" runs, as uid 1000',
    features=(Feature.SECURITY_RUN_AS_NON_ROOT,),
    requires=(Feature.SECURITY_USER,),
)
def run_as_non_root_uid(ctx: Context) -> None:
    script = 'echo "uid=$(id -u)"; [ "$(id -u)" = 1000 ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"runAsNonRoot": True, "user": "1000"}},
        0,
        "runAsNonRoot with user 1000",
    )

"""Security settings, each checked from inside the replica: the user it runs
as, a read-only root filesystem, Linux capabilities (``/proc/self/status``
and what the kernel then refuses), and no-new-privileges."""

from __future__ import annotations

from portway.capabilities.vocabulary import Feature

from .case import Context, case

# CapEff of the replica's first process, as 16 hex digits
_CAP_EFF = 'cap=$(sed -n "s/^CapEff:[[:space:]]*//p" /proc/self/status); echo "CapEff=$cap"; '
CAP_CHOWN_BIT = 0
CAP_NET_ADMIN_BIT = 12


@case(
    "security.user",
    "security.user 65534 runs the replica as uid 65534",
    features=(Feature.SECURITY_USER,),
)
def user(ctx: Context) -> None:
    script = 'echo "uid=$(id -u) gid=$(id -g)"; [ "$(id -u)" = 65534 ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"user": "65534"}}, 0, "user 65534"
    )


@case(
    "security.user_group",
    "security.user uid:gid sets both the user and the group",
    features=(Feature.SECURITY_USER,),
)
def user_group(ctx: Context) -> None:
    script = 'echo "uid=$(id -u) gid=$(id -g)"; [ "$(id -u)" = 65534 ] && [ "$(id -g)" = 65534 ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"user": "65534:65534"}},
        0,
        "user 65534:65534",
    )


@case(
    "security.read_only_rootfs",
    "readOnlyRootFilesystem: writing to / fails",
    features=(Feature.SECURITY_READ_ONLY_ROOTFS,),
)
def read_only_rootfs(ctx: Context) -> None:
    # only / itself: engines may mount a tmpfs on /tmp of a read-only root (Podman does)
    script = "grep ' / ' /proc/mounts; touch /portway-probe 2>&1 && exit 4; exit 0"
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"readOnlyRootFilesystem": True}},
        0,
        "read-only root filesystem (exit 4: / writable)",
    )


@case(
    "security.cap_drop_all",
    "dropping ALL capabilities: CapEff is 0 and root cannot chown",
    features=(Feature.SECURITY_CAP_DROP,),
)
def cap_drop_all(ctx: Context) -> None:
    script = (
        _CAP_EFF + '[ "$cap" = 0000000000000000 ] || exit 3; '
        "touch /tmp/f; chown 65534 /tmp/f 2>&1 && exit 4; exit 0"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"capabilities": {"drop": ["ALL"]}}},
        0,
        "capabilities drop ALL (exit 3: CapEff not 0; 4: chown allowed)",
    )


@case(
    "security.cap_drop_one",
    "dropping CHOWN removes just that capability",
    features=(Feature.SECURITY_CAP_DROP,),
)
def cap_drop_one(ctx: Context) -> None:
    script = (
        _CAP_EFF + f"[ $(( 0x$cap & {1 << CAP_CHOWN_BIT} )) -eq 0 ] || exit 3; "
        '[ "$cap" != 0000000000000000 ] || exit 5; '
        "touch /tmp/f; chown 65534 /tmp/f 2>&1 && exit 4; exit 0"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"capabilities": {"drop": ["CHOWN"]}}},
        0,
        "capabilities drop CHOWN (exit 3: still in CapEff; 4: chown allowed; 5: all dropped)",
    )


@case(
    "security.cap_add",
    "adding NET_ADMIN grants it: the bit is in CapEff and root may set an MTU",
    features=(Feature.SECURITY_CAP_ADD,),
)
def cap_add(ctx: Context) -> None:
    script = (
        _CAP_EFF + f"[ $(( 0x$cap & {1 << CAP_NET_ADMIN_BIT} )) -ne 0 ] || exit 3; "
        "busybox ip link set lo mtu 1400 2>&1 || exit 4; exit 0"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"capabilities": {"add": ["NET_ADMIN"]}}},
        0,
        "capabilities add NET_ADMIN (exit 3: not in CapEff; 4: setting an MTU refused)",
    )


@case(
    "security.no_new_privileges",
    "noNewPrivileges sets NoNewPrivs: 1 in /proc/self/status",
    features=(Feature.SECURITY_NO_NEW_PRIVILEGES,),
)
def no_new_privileges(ctx: Context) -> None:
    script = (
        "grep NoNewPrivs /proc/self/status; grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "security": {"noNewPrivileges": True}},
        0,
        "noNewPrivileges",
    )

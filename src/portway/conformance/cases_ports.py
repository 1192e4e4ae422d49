"""Published ports, reached on 127.0.0.1 only.

UDP: the test image's busybox ``nc`` is built without UDP (no ``-u``), and
busybox offers no UDP echo server; its only UDP listener is ``udhcpd`` (which
needs CAP_NET_RAW, added explicitly: not every engine grants it). So
the UDP case sends DHCP DISCOVER datagrams from a socket on 127.0.0.1 to the
published UDP port, and the replica exits 0 once its DHCP server logged that
it received one (and answered with an OFFER). That proves delivery into the
replica; a reply cannot come back through the published port, because DHCP
answers go to the client's port 68 by broadcast.
"""

from __future__ import annotations

import socket
import struct
import time

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import LABEL_NAMESPACE, PublishedPort, ReplicaState
from portway.errors import DriverError, PortInUseError

from .case import DEFAULT_IMAGE_TEXT, HTTP_PORT, LOOPBACK, Context, case, describe, describe_ports
from .failures import CaseFailed, expect

HTTP = {"containerPort": HTTP_PORT}
DHCP_SERVER_PORT = 67

# udhcpd needs a configuration: the interface (the replica's eth0, which
# every engine's default network gives it), an address pool (never handed
# out: nothing answers the OFFER) and writable state files.
_UDHCPD_SCRIPT = (
    "printf 'interface eth0\\nstart 10.254.0.10\\nend 10.254.0.20\\n"
    "lease_file /tmp/leases\\npidfile /tmp/udhcpd.pid\\n' > /tmp/udhcpd.conf; "
    "udhcpd -f /tmp/udhcpd.conf 2>/tmp/udhcpd.log & "
    "i=0; while [ $i -lt 300 ]; do "
    "grep -q OFFER /tmp/udhcpd.log && { cat /tmp/udhcpd.log; exit 0; }; "
    "sleep 0.1; i=$((i+1)); done; cat /tmp/udhcpd.log; exit 1"
)


def _dhcp_discover() -> bytes:
    """A minimal, valid DHCPDISCOVER (RFC 2131)."""
    header = struct.pack(
        "!BBBBIHHIIII16s64s128sI",
        1,  # op: BOOTREQUEST
        1,  # htype: Ethernet
        6,  # hlen
        0,  # hops
        0x50570001,  # xid
        0,  # secs
        0,  # flags
        0,  # ciaddr
        0,  # yiaddr
        0,  # siaddr
        0,  # giaddr
        bytes.fromhex("02505700cf01").ljust(16, b"\0"),  # chaddr: a local MAC
        b"",  # sname
        b"",  # file
        0x63825363,  # magic cookie
    )
    options = bytes([53, 1, 1, 255])  # DHCP message type DISCOVER; end
    return (header + options).ljust(300, b"\0")


@case(
    "ports.tcp_host_port",
    "a fixed hostPort publishes replica i on 127.0.0.1:hostPort+i",
    features=(Feature.PORTS_TCP, Feature.PORTS_HOST_PORT),
)
def tcp_host_port(ctx: Context) -> None:
    base = ctx.free_port(count=2)
    handle = ctx.run({"ports": [{**HTTP, "hostPort": base}], "replicas": 2}, index=1)
    status = ctx.wait_running(handle)
    expected = PublishedPort(HTTP_PORT, "tcp", LOOPBACK, base + 1)
    expect(
        expected in status.ports,
        f"replica 1 with hostPort {base} should publish {LOOPBACK}:{base + 1}; "
        f"reported {describe_ports(status)}",
    )
    body = ctx.http_get(base + 1)
    expect(DEFAULT_IMAGE_TEXT in body, f"GET on {LOOPBACK}:{base + 1} answered {body!r}")


@case(
    "ports.tcp_ephemeral",
    "without hostPort an ephemeral port on 127.0.0.1 is chosen and reported",
    features=(Feature.PORTS_TCP,),
)
def tcp_ephemeral(ctx: Context) -> None:
    handle = ctx.run({"ports": [HTTP]})
    status = ctx.wait_running(handle)
    port = ctx.published_port(status, HTTP_PORT)
    body = ctx.http_get(port)
    expect(DEFAULT_IMAGE_TEXT in body, f"GET on the ephemeral port {port} answered {body!r}")
    # the controller probes and records endpoints from list_owned alone
    listed = [
        s
        for s in ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace})
        if s.handle.id == handle.id
    ]
    expect(len(listed) == 1, f"list_owned found {len(listed)} entries for {handle.name}")
    expect(
        set(listed[0].ports) == set(status.ports),
        f"list_owned reports ports {describe_ports(listed[0])}, inspect {describe_ports(status)}",
    )


@case(
    "ports.host_port_per_replica",
    "two replicas of one workload serve on hostPort and hostPort+1 at once",
    features=(Feature.PORTS_TCP, Feature.PORTS_HOST_PORT),
)
def host_port_per_replica(ctx: Context) -> None:
    base = ctx.free_port(count=2)
    spec = {"ports": [{**HTTP, "hostPort": base}], "replicas": 2}
    handles = [ctx.run(spec, index=i) for i in range(2)]
    for handle in handles:
        ctx.wait_running(handle)
    for port in (base, base + 1):
        body = ctx.http_get(port)
        expect(DEFAULT_IMAGE_TEXT in body, f"GET on {LOOPBACK}:{port} answered {body!r}")


@case(
    "ports.host_port_in_use",
    "a hostPort already taken on the host fails with PortInUseError, not silently",
    features=(Feature.PORTS_TCP, Feature.PORTS_HOST_PORT),
)
def host_port_in_use(ctx: Context) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen(1)
        taken = int(holder.getsockname()[1])
        try:
            handle = ctx.create({"ports": [{**HTTP, "hostPort": taken}]})
            ctx.driver.start(handle)
        except PortInUseError:
            return
        except DriverError as exc:
            raise CaseFailed(
                f"publishing on taken port {taken} raised {type(exc).__name__}, "
                f"not PortInUseError: {exc}"
            ) from None
        status = ctx.inspect(handle)
        raise CaseFailed(
            f"create+start publishing on {LOOPBACK}:{taken}, which the test holds, did not "
            f"fail: {describe(status)}, ports {describe_ports(status)}"
        )


@case(
    "ports.udp",
    "a UDP port is published on 127.0.0.1 and datagrams reach the replica",
    features=(Feature.PORTS_UDP,),
    requires=(Feature.SECURITY_CAP_ADD,),
)
def udp(ctx: Context) -> None:
    handle = ctx.run(
        {
            "command": ["sh", "-c", _UDHCPD_SCRIPT],
            "ports": [{"containerPort": DHCP_SERVER_PORT, "protocol": "udp"}],
            # udhcpd opens a raw socket for its answers; Podman's default
            # capability set, unlike Docker's, leaves NET_RAW out
            "security": {"capabilities": {"add": ["NET_RAW"]}},
        }
    )
    status = ctx.wait_running(handle)
    port = ctx.published_port(status, DHCP_SERVER_PORT, "udp")
    packet = _dhcp_discover()
    deadline = time.monotonic() + 15
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while True:
            sock.sendto(packet, (LOOPBACK, port))
            sent += 1
            status = ctx.inspect(handle)
            if status.state is not ReplicaState.RUNNING or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    output = ctx.quote_output(ctx.output(handle))
    expect(
        status.state is ReplicaState.EXITED,
        f"the replica's UDP server got none of {sent} datagrams sent to {LOOPBACK}:{port} "
        f"within 15s: {describe(status)}{output}",
    )
    expect(
        status.exit_code == 0,
        f"the replica's UDP server did not report a datagram (exit code {status.exit_code})"
        f"{output}",
    )

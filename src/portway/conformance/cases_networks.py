"""Named networks (``spec.networks``): replicas of a namespace meet only over a
network they share.

A service ``web`` joins the network ``front``. Three clients of the same
namespace try to reach it: one on ``front`` (it must, by name and by address),
one on ``back`` and one on the namespace's own network (neither may, by name
or by address), and one on both ``front`` and ``back`` (it must). The traffic
stays inside networks the driver made for the case's namespace; the test itself
only execs in the replicas.
"""

from __future__ import annotations

import time

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import Handle

from .case import HTTP_PORT, Context, case
from .cases_services import _SERVE, SERVICE, _fetch_script, _own_address
from .failures import expect

#: one attempt, bounded: what must not answer gets 3 s to fail to
_ONE_TRY = "timeout 3 wget -Y off -qO- http://{host}:{port}/ 2>/dev/null; true"


def _reaches(ctx: Context, client: Handle, host: str) -> bool:
    result = ctx.executor().exec(client, ["sh", "-c", _fetch_script(host, HTTP_PORT)], timeout=60)
    return result.exit_code == 0 and b"served by " in result.output


def _apart(ctx: Context, client: Handle, host: str, served_by: bytes) -> bool:
    """Whether ``client`` fails to get the service's own page from ``host``.
    The page names the server (``served_by``): on a host where other engines
    make bridges too, the same address in another engine's subnet may answer,
    and that is not this service (a parallel run once met a Podman replica
    there, before this check named the server)."""
    script = _ONE_TRY.format(host=host, port=HTTP_PORT)
    result = ctx.executor().exec(client, ["sh", "-c", script], timeout=20)
    return served_by not in result.output


@case(
    "networks.named",
    "replicas on a shared named network reach each other; replicas sharing none do not",
    features=(Feature.NETWORKS_NAMED,),
    requires=(Feature.COMMAND, Feature.EXEC, Feature.PORTS_TCP),
)
def named_networks(ctx: Context) -> None:
    service = {
        "command": _SERVE,
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "networks": ["front"],
    }
    server = ctx.run(service, workload=SERVICE)
    sleeper = {"command": ["sleep", "600"]}
    clients = {
        "front": ctx.run({**sleeper, "networks": ["front"]}, workload="on-front"),
        "back": ctx.run({**sleeper, "networks": ["back"]}, workload="on-back"),
        "both": ctx.run({**sleeper, "networks": ["front", "back"]}, workload="on-both"),
        "own": ctx.run(sleeper, workload="on-namespace"),
    }
    for handle in (server, *clients.values()):
        ctx.wait_running(handle)
    address = _own_address(ctx, server)
    named = ctx.executor().exec(server, ["hostname"], timeout=10)
    expect(named.exit_code == 0, f"hostname in {server.name}: {named.output!r}")
    served_by = b"served by " + named.output.strip()
    for which in ("front", "both"):
        for host in (SERVICE, address):
            expect(
                _reaches(ctx, clients[which], host),
                f"a replica on {which!r} could not fetch http://{host}:{HTTP_PORT}/ from the "
                "service on 'front'",
            )
    for which in ("back", "own"):
        apart = _apart(ctx, clients[which], address, served_by)
        if not apart:
            # Docker deletes and inserts its isolation rules again whenever any
            # network on the engine is made or removed (other workloads, a
            # parallel test run); a connection in that instant crosses. The
            # planner says so wherever it calls the feature honored on Docker
            # (DockerDriver.capabilities().caveats). What this case proves is the steady
            # state: two more tries a moment later must both stay apart.
            time.sleep(0.5)
            apart = all(_apart(ctx, clients[which], address, served_by) for _ in range(2))
            if apart:
                ctx.notes.append(
                    f"one try from {which!r} crossed to 'front' and the next two did not: "
                    "the engine was rewriting its isolation rules"
                )
        expect(
            apart,
            f"a replica on {which!r} reached the service on 'front' at {address}:{HTTP_PORT}: "
            "networks that share no replica are not kept apart",
        )
        # through sh: the image's busybox runs its nslookup applet from there
        lookup = ctx.executor().exec(
            clients[which], ["sh", "-c", f"nslookup {SERVICE}"], timeout=20
        )
        expect(
            b"Server:" in lookup.output,
            f"nslookup did not run in the replica on {which!r}: {lookup.output[-200:]!r}",
        )
        expect(
            address.encode() not in lookup.output,
            f"the service's name resolves to {address} on {which!r}, which it does not join",
        )

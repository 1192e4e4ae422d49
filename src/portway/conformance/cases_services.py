"""Services: replicas of one namespace find a service by name (``services.dns``)
and by the variables portway sets for them (``services.env``).

A workload with a named port is the service ``NAME.NAMESPACE``. The DNS case runs
a service ``web`` of two replicas, each serving its own hostname, and a
client workload in the same namespace; inside the client it resolves
``web.NAMESPACE`` (it must name both replicas) and fetches
``http://web.NAMESPACE:8080/`` and ``http://web:8080/``. Everything travels
on the namespace network the driver made; the test itself only reaches a
published port on 127.0.0.1.

The env case gives a client the variables portway's controller computes for
the namespace's services (``service_env``, the Kubernetes ``*_SERVICE_*``
set) and checks them inside the replica; where the engine resolves names it
also fetches the service through ``$WEB_SERVICE_HOST:$WEB_SERVICE_PORT``.

Each fetch tries busybox ``wget``, then the same request through ``nc``, and
is retried: in the sandboxed tier (gVisor with host networking) ``wget``
between replicas fails to read its answer ("Resource temporarily
unavailable") whether it was given a name or an address, while lookups and
``nc`` succeed; that is gVisor's socket emulation, not name resolution.
"""

from __future__ import annotations

import re

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import Handle
from portway.spec.services import service_env, service_ports

from .case import HTTP_PORT, LOOPBACK, Context, case
from .failures import expect

SERVICE = "web"
CLIENT = "client"
#: serves "served by HOSTNAME" on HTTP_PORT (a replica's hostname is its own)
_SERVE = [
    "sh",
    "-c",
    'mkdir -p /tmp/www && echo "served by $(hostname)" > /tmp/www/index.html && '
    f"exec httpd -f -p {HTTP_PORT} -h /tmp/www",
]
_TRIES = 15
_ADDRESS = re.compile(r"^Address(?:\s+\d+)?:\s*(\S+)\s*$")


def _fetch_script(host: str, port: int | str) -> str:
    """GET http://HOST:PORT/ until it answers (at most _TRIES times), never
    through a proxy: with wget, else with nc (answer headers included). HOST
    and PORT may be shell words such as ``$WEB_SERVICE_HOST``."""
    return (
        f"n=0; while [ $n -lt {_TRIES} ]; do "
        f'timeout 2 wget -Y off -qO- "http://{host}:{port}/" && exit 0; '
        f"out=$(printf 'GET / HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' \"{host}\" "
        f'| timeout 2 nc "{host}" "{port}"); '
        'case "$out" in *"served by "*) echo "$out"; exit 0;; esac; '
        "n=$((n+1)); sleep 0.2; done; exit 1"
    )


def _lookup_script(name: str, count: int) -> str:
    """Resolve ``name`` until it has ``count`` addresses (at most _TRIES times);
    print the last answer. The output has one ``Address`` line for the DNS
    server, then one per address of the name."""
    return (
        f"n=0; while [ $n -lt {_TRIES} ]; do "
        f"out=$(nslookup {name} 2>&1); "
        f'[ "$(echo "$out" | grep -c "^Address")" -gt {count} ] && break; '
        'n=$((n+1)); sleep 0.2; done; echo "$out"'
    )


def resolved_addresses(nslookup_output: str) -> set[str]:
    """The addresses busybox ``nslookup`` gave for the name: the ``Address``
    lines after a ``Name:`` line (the ones before it are the DNS server's)."""
    found: set[str] = set()
    answered = False
    for line in nslookup_output.splitlines():
        if line.startswith("Name:"):
            answered = True
            continue
        match = _ADDRESS.match(line)
        if answered and match:
            found.add(match.group(1))
    return found


def _own_address(ctx: Context, handle: Handle) -> str:
    result = ctx.executor().exec(handle, ["hostname", "-i"], timeout=10)
    expect(result.exit_code == 0, f"hostname -i in {handle.name}: {result.output!r}")
    return result.output.decode(errors="replace").split()[0]


@case(
    "services.dns_by_name",
    "another workload of the namespace reaches a service's replicas as NAME.NAMESPACE and NAME",
    features=(Feature.SERVICES_DNS,),
    requires=(Feature.COMMAND, Feature.EXEC, Feature.PORTS_TCP),
)
def dns_by_name(ctx: Context) -> None:
    service = {
        "command": _SERVE,
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "replicas": 2,
    }
    servers = [ctx.run(service, index=i, workload=SERVICE) for i in range(2)]
    client = ctx.run({"command": ["sleep", "600"]}, workload=CLIENT)
    for handle in (*servers, client):
        ctx.wait_running(handle)
    # the namespace network keeps publishing on 127.0.0.1 as before
    status = ctx.inspect(servers[0])
    body = ctx.http_get(ctx.published_port(status, HTTP_PORT))
    expect(body.startswith("served by "), f"GET on {LOOPBACK} answered {body!r}")

    executor = ctx.executor()
    fqdn = f"{SERVICE}.{ctx.namespace}"
    lookup = executor.exec(client, ["sh", "-c", _lookup_script(fqdn, 2)], timeout=30)
    text = lookup.output.decode(errors="replace")
    wanted = {_own_address(ctx, h) for h in servers}
    expect(
        resolved_addresses(text) == wanted,
        f"nslookup {fqdn} in the client should name both replicas {sorted(wanted)}; it said: "
        + " | ".join(text.strip().splitlines()),
    )
    for name in (fqdn, SERVICE):
        url = f"http://{name}:{HTTP_PORT}/"
        result = executor.exec(client, ["sh", "-c", _fetch_script(name, HTTP_PORT)], timeout=60)
        answer = result.output.decode(errors="replace").strip()
        expect(
            result.exit_code == 0 and "served by " in answer,
            f"wget {url} in the client replica failed {_TRIES} times "
            f"(exit code {result.exit_code}): {answer[-300:]!r}",
        )


@case(
    "services.env_vars",
    "a replica gets NAME_SERVICE_HOST/_PORT/_PORT_<NAME> for the services of its namespace",
    features=(Feature.SERVICES_ENV,),
    requires=(Feature.COMMAND, Feature.PORTS_TCP),
)
def env_vars(ctx: Context) -> None:
    """The variables as the controller computes them (``service_env``) reach
    the replica intact, next to its own; where the engine resolves names,
    ``http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/`` reaches the service."""
    service = {"command": _SERVE, "ports": [{"name": "http", "containerPort": HTTP_PORT}]}
    server = ctx.run(service, workload=SERVICE)
    ctx.wait_running(server)
    env = service_env({SERVICE: service_ports(ctx.spec(service))}, ctx.namespace)
    expected = {
        "WEB_SERVICE_HOST": f"{SERVICE}.{ctx.namespace}",
        "WEB_SERVICE_PORT": str(HTTP_PORT),
        "WEB_SERVICE_PORT_HTTP": str(HTTP_PORT),
    }
    expect(env == expected, f"service_env gave {env}, expected {expected}")
    checks = " && ".join(f'[ "${key}" = "{value}" ]' for key, value in expected.items())
    script = f'{checks} && [ "$OWN" = "kept" ] || {{ env | sort; exit 3; }}'
    if Feature.SERVICES_DNS in ctx.declared:
        script += "; " + _fetch_script("$WEB_SERVICE_HOST", "$WEB_SERVICE_PORT")
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "env": {"OWN": "kept", **env}},
        0,
        "the client replica checking its service variables"
        + (
            " and fetching the service through them" if Feature.SERVICES_DNS in ctx.declared else ""
        ),
        timeout=90,
        workload=CLIENT,
    )

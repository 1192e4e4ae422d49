"""portway.ingress.config: state + slot layout -> haproxy.cfg text, no HAProxy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from portway.ingress import (
    Backend,
    Endpoint,
    HealthCheck,
    IngressSettings,
    IngressState,
    Mode,
    Route,
)
from portway.ingress.config import (
    NO_ROUTE_BACKEND,
    Paths,
    backend_id,
    frontend_id,
    ms,
    render_config,
    render_maps,
    route_order,
    structure_digest,
    structure_summary,
)
from portway.ingress.slots import allocate_all

PATHS = Paths(Path("/srv/portway/ingress"))
SETTINGS = IngressSettings()
HTTP_CHECK = HealthCheck(kind="http", path="/healthz", interval=0.5, timeout=0.25, fall=3, rise=2)


def endpoint(n: int, **changes: object) -> Endpoint:
    base = Endpoint(f"c{n}", "127.0.0.1", 30000 + n, ready=True, replica=f"web-{n}")
    return replace(base, **changes)  # type: ignore[arg-type]


def web(*endpoints: Endpoint, check: HealthCheck = HTTP_CHECK) -> Backend:
    return Backend("web.default:http", Mode.HTTP, endpoints, check)


def state_of(*backends: Backend, routes: tuple[Route, ...] | None = None) -> IngressState:
    if routes is None:
        routes = tuple(Route("127.0.0.1:18080", b.mode, b.name) for b in backends)
    return IngressState(routes, {b.name: b for b in backends})


def render(state: IngressState, settings: IngressSettings = SETTINGS) -> str:
    layout = allocate_all(state.backends, {}, settings.min_slots)
    return render_config(state, layout, settings, PATHS)


def section(text: str, header: str) -> list[str]:
    """The lines of one section (``backend be_x``), stripped."""
    lines = text.splitlines()
    start = lines.index(header)
    body: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        body.append(line.strip())
    return body


# --- names ----------------------------------------------------------------


def test_backend_id_keeps_a_name_haproxy_accepts() -> None:
    assert backend_id("web.default:http") == "be_web.default:http"


def test_backend_id_sanitises_and_never_merges_two_names() -> None:
    slash, space = backend_id("web/default:http"), backend_id("web default:http")
    assert slash.startswith("be_web_default:http-") and space.startswith("be_web_default:http-")
    assert slash != space != backend_id("web_default:http")


def test_frontend_id_from_listen_address() -> None:
    assert frontend_id("127.0.0.1:18080") == "fe_127.0.0.1_18080"
    assert frontend_id("[::1]:80") == "fe_::1_80"


@pytest.mark.parametrize(
    ("seconds", "text"), [(1.0, "1000ms"), (0.2, "200ms"), (30, "30000ms"), (0.0001, "1ms")]
)
def test_ms(seconds: float, text: str) -> None:
    assert ms(seconds) == text


# --- the whole file for one small state -------------------------------------


def test_render_one_http_service() -> None:
    state = state_of(web(endpoint(1), endpoint(2, ready=False)))
    assert render(state) == GOLDEN


GOLDEN = """\
# Written by portway (portway.ingress) on every structural change; edits are lost.
# Endpoints move between server slots at runtime: this file shows them as of
# the last write; HAProxy's own view is `show servers state` on haproxy.sock.

global
    maxconn 4096
    nbthread 1
    hard-stop-after 30000ms
    stats socket /srv/portway/ingress/haproxy.sock mode 600 level admin expose-fd listeners
    server-state-file /srv/portway/ingress/server-state
    log stderr format iso local0 info

defaults
    log global
    option dontlognull
    option dontlog-normal
    maxconn 4096
    timeout connect 1000ms
    timeout client 30000ms
    timeout server 30000ms
    timeout http-request 10000ms
    timeout http-keep-alive 10000ms
    timeout queue 5000ms
    retries 3
    option redispatch 1
    load-server-state-from-file global

frontend fe_127.0.0.1_18080
    mode http
    bind 127.0.0.1:18080
    option httplog
    option http-keep-alive
    option idle-close-on-response
    default_backend be_web.default:http

backend be_web.default:http
    mode http
    balance roundrobin
    option forwardfor
    retry-on conn-failure empty-response response-timeout
    http-request disable-l7-retry unless METH_GET || METH_OPTIONS
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    timeout check 250ms
    default-server check inter 500ms fall 3 rise 2
    http-response set-header X-Portway-Backend \
%[srv_name,map(/srv/portway/ingress/maps/be_web.default_http-a121702e.map,-)]
    server s1 127.0.0.1:30001
    server s2 127.0.0.1:30002 disabled
    server s3 127.0.0.1:1 disabled
    server s4 127.0.0.1:1 disabled

backend pw_no_route
    mode http
    http-request return status 404 content-type text/plain string "no route"
""".replace("\\\n", "")


# --- pieces ---------------------------------------------------------------


def test_servers_ready_take_traffic_others_start_disabled() -> None:
    state = state_of(
        web(endpoint(1), endpoint(2, ready=False), endpoint(3, draining=True, ready=True))
    )
    servers = section(render(state), "backend be_web.default:http")
    assert [line for line in servers if line.startswith("server ")] == [
        "server s1 127.0.0.1:30001",
        "server s2 127.0.0.1:30002 disabled",
        "server s3 127.0.0.1:30003 disabled",  # draining: no new traffic from the start
        "server s4 127.0.0.1:1 disabled",  # free slot
    ]


def test_ipv6_endpoint_and_listen() -> None:
    backend = web(endpoint(1, address="::1"))
    state = state_of(backend, routes=(Route("[::1]:18080", Mode.HTTP, backend.name),))
    text = render(state)
    assert "    bind [::1]:18080" in text.splitlines()
    assert "server s1 [::1]:30001" in section(text, "backend be_web.default:http")


def test_tcp_service_has_no_http_directives() -> None:
    echo = Backend("echo.default:tcp", Mode.TCP, (endpoint(1),), HealthCheck())
    text = render(state_of(echo))
    frontend = section(text, "frontend fe_127.0.0.1_18080")
    backend = section(text, "backend be_echo.default:tcp")
    assert frontend == [
        "mode tcp",
        "bind 127.0.0.1:18080",
        "option tcplog",
        "default_backend be_echo.default:tcp",
    ]
    assert "mode tcp" in backend
    assert "default-server check inter 1000ms fall 2 rise 1" in backend
    assert not [line for line in backend if "http" in line or "retry-on" in line]


def test_http_check_on_a_tcp_service() -> None:
    echo = Backend("db:tcp", Mode.TCP, (endpoint(1),), HealthCheck(kind="http", path="/ready"))
    backend = section(render(state_of(echo)), "backend be_db:tcp")
    assert "option httpchk" in backend
    assert "http-check send meth GET uri /ready ver HTTP/1.1 hdr Host localhost" in backend


def test_no_header_when_disabled() -> None:
    settings = IngressSettings(replica_header=None)
    text = render(state_of(web(endpoint(1))), settings)
    assert "X-Portway-Backend" not in text
    state = state_of(web(endpoint(1)))
    assert render_maps(state, allocate_all(state.backends, {}, 4), settings, PATHS) == {}


def test_access_log_of_normal_requests_is_optional() -> None:
    assert "option dontlog-normal" in render(state_of(web(endpoint(1))))
    quiet = render(state_of(web(endpoint(1))), IngressSettings(log_normal=True))
    assert "option dontlog-normal" not in quiet


def test_settings_reach_the_config() -> None:
    settings = IngressSettings(
        maxconn=100, connect_timeout=2, retries=5, hard_stop_after=60, queue_timeout=1
    )
    text = render(state_of(web(endpoint(1))), settings)
    for line in (
        "maxconn 100",
        "timeout connect 2000ms",
        "retries 5",
        "hard-stop-after 60000ms",
        "timeout queue 1000ms",
    ):
        assert f"    {line}" in text.splitlines()


def test_maps_name_each_slot_replica() -> None:
    state = state_of(web(endpoint(1), endpoint(2, replica="")))
    layout = allocate_all(state.backends, {}, 4)
    maps = render_maps(state, layout, SETTINGS, PATHS)
    assert maps == {
        PATHS.map_file("be_web.default:http"): "s1 web-1\ns2 c2\ns3 -\ns4 -\n",
    }


# --- routing --------------------------------------------------------------


def test_routes_longest_path_first_then_host_then_default() -> None:
    names = ("host", "host-api", "api", "api-v2", "default", "other-host")
    backends = [Backend(n, Mode.HTTP, (endpoint(1),), HTTP_CHECK) for n in names]
    listen = "127.0.0.1:18080"
    routes = (
        Route(listen, Mode.HTTP, "default"),
        Route(listen, Mode.HTTP, "host", host="Shop.Example"),
        Route(listen, Mode.HTTP, "api", path_prefix="/api/"),
        Route(listen, Mode.HTTP, "host-api", host="shop.example", path_prefix="/api"),
        Route(listen, Mode.HTTP, "api-v2", path_prefix="/api/v2"),
        Route(listen, Mode.HTTP, "other-host", host="other.example"),
    )
    frontend = section(render(state_of(*backends, routes=routes)), "frontend fe_127.0.0.1_18080")
    rules = [line for line in frontend if line.startswith(("acl", "use_backend", "default_"))]
    assert rules == [
        "acl r1_path path -m str /api/v2",
        "acl r1_path path_beg /api/v2/",
        "use_backend be_api-v2 if r1_path",
        "acl r2_host req.hdr(host),field(1,:),lower -m str shop.example",
        "acl r2_path path -m str /api",
        "acl r2_path path_beg /api/",
        "use_backend be_host-api if r2_host r2_path",
        "acl r3_path path -m str /api",
        "acl r3_path path_beg /api/",
        "use_backend be_api if r3_path",
        "acl r4_host req.hdr(host),field(1,:),lower -m str shop.example",
        "use_backend be_host if r4_host",
        "acl r5_host req.hdr(host),field(1,:),lower -m str other.example",
        "use_backend be_other-host if r5_host",
        "default_backend be_default",
    ]


def test_route_order_key() -> None:
    listen = "127.0.0.1:1"
    ordered = sorted(
        [
            Route(listen, Mode.HTTP, "d"),
            Route(listen, Mode.HTTP, "h", host="a"),
            Route(listen, Mode.HTTP, "p", path_prefix="/a"),
            Route(listen, Mode.HTTP, "hp", host="a", path_prefix="/a"),
            Route(listen, Mode.HTTP, "root", path_prefix="/"),
        ],
        key=route_order,
    )
    assert [r.backend for r in ordered] == ["hp", "p", "h", "d", "root"]


def test_without_a_default_route_unmatched_requests_get_404() -> None:
    backend = web(endpoint(1))
    routes = (Route("127.0.0.1:18080", Mode.HTTP, backend.name, host="a.example"),)
    text = render(state_of(backend, routes=routes))
    assert f"default_backend {NO_ROUTE_BACKEND}" in section(text, "frontend fe_127.0.0.1_18080")
    assert "http-request return status 404" in text


def test_several_listen_addresses_get_one_frontend_each() -> None:
    backend = web(endpoint(1))
    routes = (
        Route("127.0.0.1:18081", Mode.HTTP, backend.name),
        Route("127.0.0.1:18080", Mode.HTTP, backend.name),
    )
    text = render(state_of(backend, routes=routes))
    frontends = [line for line in text.splitlines() if line.startswith("frontend ")]
    assert frontends == ["frontend fe_127.0.0.1_18080", "frontend fe_127.0.0.1_18081"]


# --- what needs a reload ----------------------------------------------------


def digest(state: IngressState, settings: IngressSettings = SETTINGS) -> str:
    layout = allocate_all(state.backends, {}, settings.min_slots)
    return structure_digest(state, layout, settings, PATHS)


def test_endpoint_changes_keep_the_structure() -> None:
    base = digest(state_of(web(endpoint(1), endpoint(2))))
    assert digest(state_of(web(endpoint(1), endpoint(2, ready=False)))) == base
    assert digest(state_of(web(endpoint(1), endpoint(2, draining=True)))) == base
    assert digest(state_of(web(endpoint(1), endpoint(2, port=40000)))) == base
    assert digest(state_of(web(endpoint(1)))) == base
    assert digest(state_of(web(endpoint(1), endpoint(2), endpoint(3), endpoint(4)))) == base
    assert digest(state_of(web(endpoint(1, replica="other")))) == base


def test_structural_changes_change_the_digest() -> None:
    base_state = state_of(web(endpoint(1)))
    base = digest(base_state)
    more_routes = IngressState(
        (*base_state.routes, Route("127.0.0.1:18081", Mode.HTTP, "web.default:http")),
        base_state.backends,
    )
    assert digest(more_routes) != base
    assert digest(state_of(web(endpoint(1), check=replace(HTTP_CHECK, fall=5)))) != base
    assert digest(state_of(web(endpoint(1), check=replace(HTTP_CHECK, path="/x")))) != base
    assert digest(state_of(web(*(endpoint(n) for n in range(5))))) != base  # 8 slots
    assert digest(base_state, IngressSettings(retries=2)) != base


def test_structure_summary_says_what_is_there() -> None:
    state = state_of(web(endpoint(1)))
    layout = allocate_all(state.backends, {}, 4)
    summary = structure_summary(state, layout, SETTINGS)
    assert summary["listeners"] == {"127.0.0.1:18080": [["http", None, None, "web.default:http"]]}
    assert summary["backends"] == {
        "web.default:http": {
            "mode": "http",
            "check": ["http", "/healthz", 0.5, 0.25, 3, 2],
            "slots": 4,
        }
    }


def test_sockets_move_to_a_short_directory_when_the_home_path_is_too_long(
    tmp_path: Path,
) -> None:
    from portway.ingress.config import Paths

    short = Paths.under(Path("/var/lib/portway"))  # nothing is made on disk
    assert short.socket_dir == short.dir  # the usual case: next to the configuration
    deep = Paths.under(tmp_path / ("d" * 100))
    assert deep.socket_dir != deep.dir
    for socket in (deep.master_socket, deep.stats_socket):
        assert len(str(socket)) <= 97  # HAProxy's limit
    # one home, one directory; another home, another
    assert Paths.under(tmp_path / ("d" * 100)).socket_dir == deep.socket_dir
    assert Paths.under(tmp_path / ("e" * 100)).socket_dir != deep.socket_dir

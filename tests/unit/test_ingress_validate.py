"""portway.ingress.validate: conflicts and unusable values, before HAProxy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from portway.errors import InputError, PortwayError
from portway.ingress import (
    Backend,
    Endpoint,
    HealthCheck,
    IngressConflictError,
    IngressError,
    IngressState,
    Mode,
    Route,
    validate,
)
from portway.ingress.validate import normal_path, parse_listen

LISTEN = "127.0.0.1:18080"
EP = Endpoint("c1", "127.0.0.1", 30001, ready=True, replica="web-0")


def backend(name: str, mode: Mode = Mode.HTTP, *endpoints: Endpoint, **check: object) -> Backend:
    return Backend(name, mode, endpoints or (EP,), HealthCheck(**check))  # type: ignore[arg-type]


def state(*routes: Route, backends: tuple[Backend, ...] | None = None) -> IngressState:
    if backends is None:
        names = {(r.backend, r.mode) for r in routes}
        backends = tuple(backend(name, mode) for name, mode in sorted(names))
    return IngressState(routes, {b.name: b for b in backends})


def test_a_valid_state_has_no_problem() -> None:
    assert (
        validate(
            state(
                Route(LISTEN, Mode.HTTP, "web", host="shop.example"),
                Route(LISTEN, Mode.HTTP, "api", host="shop.example", path_prefix="/api"),
                Route(LISTEN, Mode.HTTP, "web", path_prefix="/static"),
                Route(LISTEN, Mode.HTTP, "web"),
                Route("127.0.0.1:5432", Mode.TCP, "db"),
                Route("[::1]:18080", Mode.HTTP, "web"),
            )
        )
        == []
    )


def test_two_tcp_routes_on_one_listen() -> None:
    problems = validate(state(Route(LISTEN, Mode.TCP, "a"), Route(LISTEN, Mode.TCP, "b")))
    assert problems == [f"listen {LISTEN}: 2 tcp routes on one address (a, b)"]


def test_mixed_modes_on_one_listen() -> None:
    problems = validate(state(Route(LISTEN, Mode.TCP, "db"), Route(LISTEN, Mode.HTTP, "web")))
    assert problems == [f"listen {LISTEN}: http and tcp routes cannot share one address"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((None, None), (None, None)),
        (("shop.example", "/api"), ("SHOP.example", "/api/")),
        ((None, "/"), (None, None)),
    ],
)
def test_duplicate_host_and_path(
    first: tuple[str | None, str | None], second: tuple[str | None, str | None]
) -> None:
    problems = validate(
        state(
            Route(LISTEN, Mode.HTTP, "a", host=first[0], path_prefix=first[1]),
            Route(LISTEN, Mode.HTTP, "b", host=second[0], path_prefix=second[1]),
        )
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"listen {LISTEN}: host ")
    assert problems[0].endswith("is routed twice (to a and b)")


def test_same_host_and_path_on_two_listens_is_fine() -> None:
    assert (
        validate(state(Route(LISTEN, Mode.HTTP, "a"), Route("127.0.0.1:18081", Mode.HTTP, "a")))
        == []
    )


def test_listen_written_two_ways_is_one_listen() -> None:
    problems = validate(
        state(Route("[::1]:80", Mode.TCP, "a"), Route("[0:0::1]:80", Mode.TCP, "b"))
    )
    assert problems == ["listen [::1]:80: 2 tcp routes on one address (a, b)"]


def test_route_problems() -> None:
    web = backend("web")
    db = backend("db", Mode.TCP)
    routes = (
        Route(LISTEN, Mode.HTTP, "missing"),
        Route("127.0.0.1:18081", Mode.TCP, "web"),
        Route("127.0.0.1:18082", Mode.TCP, "db", host="a.example"),
        Route("127.0.0.1:18083", Mode.HTTP, "web", host="bad host"),
        Route("127.0.0.1:18084", Mode.HTTP, "web", path_prefix="api"),
        Route("127.0.0.1:18085", Mode.HTTP, "web", path_prefix="/a b"),
        Route("127.0.0.1:18086", Mode.HTTP, "web", path_prefix="/a#b"),
    )
    assert validate(IngressState(routes, {"web": web, "db": db})) == [
        f"route {LISTEN} -> missing: backend 'missing' is not in the state",
        "route 127.0.0.1:18081 -> web: route is tcp but backend 'web' is http",
        "route 127.0.0.1:18082 host=a.example -> db: a tcp route cannot match a host or a path",
        "route 127.0.0.1:18083 host=bad host -> web: host 'bad host' is not a DNS name",
        "route 127.0.0.1:18084 path=api -> web: path prefix 'api' must start with '/' and hold "
        "no space, quote, backslash, '#' or ';'",
        "route 127.0.0.1:18085 path=/a b -> web: path prefix '/a b' must start with '/' and hold "
        "no space, quote, backslash, '#' or ';'",
        "route 127.0.0.1:18086 path=/a#b -> web: path prefix '/a#b' must start with '/' and hold "
        "no space, quote, backslash, '#' or ';'",
    ]


@pytest.mark.parametrize(
    ("listen", "why"),
    [
        ("127.0.0.1", "is not ip:port"),
        (":80", "is not ip:port"),
        ("localhost:80", "'localhost' is not an IP address"),
        ("127.0.0.1:70000", "port must be 1..65535"),
        ("127.0.0.1:0", "port must be 1..65535"),
        ("127.0.0.1:http", "port must be 1..65535"),
    ],
)
def test_bad_listen_addresses(listen: str, why: str) -> None:
    problems = validate(state(Route(listen, Mode.HTTP, "web")))
    assert len(problems) == 1 and why in problems[0]


def test_backend_problems() -> None:
    bad = Backend(
        "web",
        Mode.HTTP,
        (
            EP,
            EP,
            replace(EP, id="c2", address="web-0.local"),
            replace(EP, id="c3", port=70000),
            replace(EP, id="c4", replica="web 4"),
        ),
        HealthCheck(kind="http", path="/a b"),
    )
    odd = Backend("odd", Mode.TCP, (EP,), HealthCheck(kind="grpc"))
    problems = validate(IngressState((), {"web": bad, "renamed": odd}))
    assert problems == [
        "backend 'web': health check path '/a b' must start with '/' and hold no space, quote, "
        "backslash, '#' or ';'",
        "backend 'web' endpoint 'c1': listed twice",
        "backend 'web' endpoint 'c2': address 'web-0.local' is not an IP address",
        "backend 'web' endpoint 'c3': port 70000 is not in 1..65535",
        "backend 'web' endpoint 'c4': replica name 'web 4' has unusable characters",
        "backend 'odd': listed under the key 'renamed'; key and name must match",
        "backend 'odd': health check kind 'grpc' is not tcp or http",
    ]


def test_haproxy_ranges_are_left_to_haproxy() -> None:
    # fall=0 is HAProxy's to refuse (haproxy -c), see the integration tests
    assert (
        validate(state(Route(LISTEN, Mode.HTTP, "web"), backends=(backend("web", fall=0),))) == []
    )


def test_conflict_error_is_input_error_and_ingress_error() -> None:
    error = IngressConflictError(["listen x: one", "listen x: two"])
    assert isinstance(error, IngressError) and isinstance(error, InputError)
    assert isinstance(error, PortwayError) and error.exit_code == 2
    assert error.problems == ["listen x: one", "listen x: two"]
    assert str(error) == "2 problems:\n  - ingress: listen x: one\n  - ingress: listen x: two"


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:18080") == ("127.0.0.1", 18080)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen("0.0.0.0:443") == ("0.0.0.0", 443)


def test_normal_path() -> None:
    assert normal_path(None) is None
    assert normal_path("/") is None
    assert normal_path("/api/") == "/api"
    assert normal_path("/api") == "/api"

"""A driver whose engine calls are spans (``portway.driver.<call>``), when
made within a traced operation (an apply, a reconcile pass, an API request).

Wrapped at one place, the target pool's opener, instead of in every
driver. The wrappers are set on the driver *instance*: the object keeps its
class, so ``isinstance`` against the optional protocols (which Python
checks on the class and the instance dict) and every other attribute work
as before. Only called when tracing is on.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from portway import tracing
from portway.drivers.base import (
    ArtifactImporter,
    Driver,
    Executor,
    Handle,
    Pinger,
    ReplicaRequest,
    SecurityInspector,
    StatsSource,
)
from portway.drivers.volumes import Pauser, VolumeManager

#: engine calls worth a span: the driver protocol's and the optional ones'.
#: Left out: streams (logs, events: a span would only time the iterator's
#: creation) and calls that never reach the engine (capabilities, checks).
_PROTOCOLS = (
    Driver,
    Pinger,
    Executor,
    StatsSource,
    SecurityInspector,
    VolumeManager,
    Pauser,
    ArtifactImporter,
)
_NOT_ENGINE_CALLS = frozenset({"capabilities"})
TRACED_CALLS: tuple[str, ...] = tuple(
    sorted(
        {
            name
            for protocol in _PROTOCOLS
            for name, value in vars(protocol).items()
            if callable(value) and not name.startswith("_") and name not in _NOT_ENGINE_CALLS
        }
    )
)
#: marks a driver already wrapped (the pool may hand one out twice)
_MARK = "_portway_traced"


def traced(driver: Driver) -> Driver:
    """``driver`` with a span around each engine call it offers."""
    if getattr(driver, _MARK, False):
        return driver
    wrapped = {
        name: _spanned(driver, name, method)
        for name in TRACED_CALLS
        if callable(method := getattr(driver, name, None))
    }
    try:
        for name, method in wrapped.items():
            setattr(driver, name, method)
        setattr(driver, _MARK, True)
    except AttributeError:  # __slots__: such a driver is used untraced
        for name in wrapped:
            with contextlib.suppress(AttributeError):
                delattr(driver, name)
    return driver


def _spanned(driver: Driver, call: str, method: Callable[..., Any]) -> Callable[..., Any]:
    name = f"portway.driver.{call}"
    base: dict[str, str] = {"portway.driver": driver.name, "portway.target": driver.target}

    # a pass-through on purpose: it stands in for any of the driver's calls
    @functools.wraps(method)
    def in_span(*args: Any, **kwargs: Any) -> Any:
        with tracing.span(name, {**base, **_about(args)}, child_only=True):
            return method(*args, **kwargs)

    return in_span


def _about(args: tuple[Any, ...]) -> dict[str, str | int]:
    """Attributes naming the replica a call is about, when it is one."""
    first = args[0] if args else None
    if isinstance(first, ReplicaRequest):
        return {
            "portway.replica": first.name,
            "portway.replica.index": first.index,
            "portway.workload": f"{first.namespace}/{first.workload}",
        }
    if isinstance(first, Handle):
        return {"portway.replica": first.name}
    return {}

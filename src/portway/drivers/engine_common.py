"""Helpers shared by the drivers of engines that speak Docker's HTTP
vocabulary (Docker and Podman): JSON accessors, engine timestamps, the
multiplexed log/exec stream and the loop that reads log lines from it, stream
cancellation, exception chains and the
naming and locking of namespace networks. Engine-specific mapping (states,
events, ports, errors, network API calls) stays in each driver.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_PREFIX,
    Handle,
    LogLine,
    ReplicaRequest,
)
from portway.drivers.follow import until_stopped
from portway.drivers.stream_body import body_pieces, split_frames

CLIENT_TIMEOUT_SECONDS = 30
MAX_POOL_SIZE = 32
# How long a stream watcher blocks on ``stop`` before checking whether its
# stream ended by itself. Waking is cheap but not free: an idle controller
# keeps an event stream open all day, so this is not a 50 ms busy-ish poll.
STOP_POLL_SECONDS = 0.5
# Exit code reported when ``exec`` hits its timeout (as coreutils ``timeout``).
EXEC_TIMEOUT_EXIT_CODE = 124
LABEL_VOLUME = LABEL_PREFIX + "volume"
ZERO_TIME_PREFIX = "0001-01-01"
TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")
STREAMS = {0: "stdout", 1: "stdout", 2: "stderr"}
Json = dict[str, Any]
T = TypeVar("T")


def obj(value: Any) -> Json:
    return cast(Json, value) if isinstance(value, dict) else {}


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in obj(value).items()}


def parse_engine_time(text: str) -> datetime | None:
    """RFC 3339 with nanoseconds -> aware datetime; the engines' zero time -> None."""
    if not text or text.startswith(ZERO_TIME_PREFIX):
        return None
    if len(text) >= 20 and text[-1] == "Z" and text[10] == "T":
        try:  # the engines' usual form; 3.11 reads nanoseconds and Z (10x the regex)
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    match = TIME_RE.match(text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{base}.{micros}{offset}")


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def read_exact(raw: Any, size: int) -> bytes:
    """Read ``size`` bytes from a urllib3 response, fewer only at EOF."""
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = raw.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def flattened(batches: Iterator[list[T]]) -> Iterator[T]:
    """The items of ``batches`` one by one; closing this closes ``batches``
    (which closes the engine's stream)."""
    try:
        for batch in batches:
            yield from batch
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def frames(response: Any) -> Iterator[tuple[int, bytes]]:
    """The multiplexed stream Docker and Podman send: 8-byte header (stream id, size), payload."""
    for batch in frame_batches(response):
        yield from batch


def frame_batches(response: Any) -> Iterator[list[tuple[int, bytes]]]:
    """``frames`` grouped as they arrive (one list per socket read), read
    straight from the socket when possible (see stream_body)."""
    pieces = body_pieces(response)
    if pieces is not None:
        yield from split_frames(pieces)
        return
    for frame in _frames_by_urllib3(response):
        yield [frame]


def _frames_by_urllib3(response: Any) -> Iterator[tuple[int, bytes]]:
    raw = response.raw
    while True:
        header = read_exact(raw, 8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:8], "big")
        if size == 0:
            continue
        payload = read_exact(raw, size)
        if payload:
            yield header[0], payload
        if len(payload) < size:
            return


class StreamWatch:
    """Cancels a stream from a helper thread as soon as ``stop`` is set.

    A thread blocked reading a socket only wakes up when the socket is shut
    down, so cancellation has to come from outside the reading thread. The
    reading thread calls ``finish`` when done, and closes the stream itself.
    """

    def __init__(self, stop: threading.Event | None, cancel: Callable[[], None]) -> None:
        self._stop = stop
        self._cancel = cancel
        self._done = threading.Event()
        self.cancelled = False
        if stop is not None:
            threading.Thread(target=self._watch, name="portway-engine-stream", daemon=True).start()

    def _watch(self) -> None:
        assert self._stop is not None
        while not self._done.is_set():
            if self._stop.wait(STOP_POLL_SECONDS):
                self.cancelled = True
                with suppress(Exception):
                    self._cancel()
                return

    @property
    def stopping(self) -> bool:
        return self.cancelled or (self._stop is not None and self._stop.is_set())

    def finish(self) -> None:
        self._done.set()


class LogDecoder(Protocol):
    """Turns an engine's log frames into lines. Docker and Podman frame the same
    stream differently (where the timestamp sits, whether a frame is a line),
    so each driver has its own; a line cut across frames waits in the decoder."""

    def decode(self, batch: list[tuple[int, bytes]]) -> list[LogLine]:
        """The whole lines that the frames of one socket read complete."""
        ...

    def flush(self) -> list[LogLine]:
        """The unfinished lines left when the stream ended."""
        ...


def log_line_batches(
    response: Any,
    stop: threading.Event | None,
    shutdown: Callable[[], None],
    guard: Callable[[], AbstractContextManager[object]],
    decoder: LogDecoder,
) -> Iterator[list[LogLine]]:
    """A log stream's lines, a list per socket read, until the engine ends the
    stream or ``stop`` is set; ``guard`` maps the engine's errors while reading.
    Setting ``stop`` shuts the socket (``shutdown``) under a blocked reader,
    which then ends quietly instead of raising."""
    watch = StreamWatch(stop, shutdown)
    try:
        batches = frame_batches(response)
        while not watch.stopping:
            try:
                with guard():
                    batch = next(batches, None)
            except Exception:
                if watch.stopping:  # a read tripped over the socket shut under it
                    return
                raise
            if batch is None:
                break
            lines = decoder.decode(batch)
            if lines:
                yield lines
        if not watch.stopping:
            rest = decoder.flush()
            if rest:
                yield rest
    finally:
        watch.finish()
        response.close()


class StreamedLogs:
    """``logs`` and ``log_batches`` (LogSource, LogBatchSource) for an engine
    that streams a container's log as multiplexed frames (Docker, Podman).
    The driver supplies how to ask for the stream (``_open_logs``), how to
    decode its frames (``_log_decoder``), how to shut its socket from another
    thread (``_stream_shutdown``) and its error mapping (``_engine``)."""

    def _open_logs(
        self, handle: Handle, *, follow: bool, tail: int | None, since: datetime | None
    ) -> tuple[Any, str]:
        """The engine's log stream for ``handle``: (response, action for errors)."""
        raise NotImplementedError

    def _log_decoder(self) -> LogDecoder:
        raise NotImplementedError

    def _stream_shutdown(self, response: Any) -> Callable[[], None]:
        raise NotImplementedError

    def _engine(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        """Lines with stdout and stderr kept apart, each with the engine's
        timestamp. ``follow`` ends when the container stops or ``stop`` is set."""
        return until_stopped(
            flattened(self.log_batches(handle, follow=follow, tail=tail, since=since, stop=stop)),
            stop,
        )

    def log_batches(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[list[LogLine]]:
        """``logs``, a list per read from the engine (LogBatchSource)."""
        response, action = self._open_logs(handle, follow=follow, tail=tail, since=since)
        return log_line_batches(
            response,
            stop,
            self._stream_shutdown(response),
            lambda: self._engine(action),
            self._log_decoder(),
        )


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(e, kinds) for e in chain(exc))


def root_message(exc: BaseException) -> str:
    *_, root = chain(exc)
    text = str(root) or type(root).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --- namespace networks (services.dns) ------------------------------------


#: on a named network of a namespace: the network's name (absent on the
#: namespace's own network)
LABEL_NETWORK = LABEL_PREFIX + "network"


def namespace_network(cluster: str, namespace: str, network: str = "") -> str:
    """The engine network of ``namespace``: ``pw<cluster6>-<namespace>``, which
    every replica of the namespace joins, or with ``network`` that named network
    of the namespace, ``pw<cluster6>-<namespace>.<network>`` (a dot: it appears
    in no DNS-1123 label, so no namespace's own network can take the name).
    Prefixed like the replicas' container names so two installations sharing an
    engine keep apart."""
    prefix = f"pw{cluster[:6]}" if cluster else "pw"
    own = f"{prefix}-{namespace}"
    return f"{own}.{network}" if network else own


@dataclass(frozen=True)
class EngineNetwork:
    """One network portway makes on an engine: a namespace's own network
    (``network`` "") or a named network of the namespace (``spec.networks``)."""

    cluster: str
    namespace: str
    network: str = ""

    @property
    def name(self) -> str:
        return namespace_network(self.cluster, self.namespace, self.network)

    def labels(self) -> dict[str, str]:
        return network_labels(self.cluster, self.namespace, self.network)

    def foreign(self, found: dict[str, str]) -> str:
        """Why the existing network of this name (labels ``found``) is not this
        one; "" when it is."""
        return foreign_network(self.name, found, self.cluster, self.namespace, self.network)


def replica_networks(request: ReplicaRequest) -> list[EngineNetwork]:
    """The networks a replica joins, the first being the one it is created on:
    none on the host's network, else its named networks, else its namespace's."""
    spec = request.spec
    if spec.security.host_network:
        return []
    names = spec.networks or [""]
    return [EngineNetwork(request.cluster, request.namespace, n) for n in names]


def released_networks(info: Json) -> list[EngineNetwork]:
    """The portway networks a removed container was on, from its inspect payload
    (Docker's and Podman's share this shape); none when it was on the host's
    network or predates namespace networks."""
    found = labels(obj(info.get("Config")).get("Labels"))
    namespace, cluster = found.get(LABEL_NAMESPACE), found.get(LABEL_CLUSTER, "")
    if not namespace:
        return []
    own = namespace_network(cluster, namespace)
    released = []
    for joined in sorted(obj(obj(info.get("NetworkSettings")).get("Networks"))):
        if joined == own:
            released.append(EngineNetwork(cluster, namespace))
        elif joined.startswith(own + "."):
            released.append(EngineNetwork(cluster, namespace, joined.removeprefix(own + ".")))
    return released


def network_labels(cluster: str, namespace: str, network: str = "") -> dict[str, str]:
    """The owner labels of a namespace network (or of a named one, ``network``)."""
    found = {LABEL_MANAGED: "true", LABEL_CLUSTER: cluster, LABEL_NAMESPACE: namespace}
    if network:
        found[LABEL_NETWORK] = network
    return found


def foreign_network(
    name: str, found: dict[str, str], cluster: str, namespace: str, network: str = ""
) -> str:
    """Why the existing network ``name`` (with labels ``found``) is not this
    namespace's network (or its network ``network``); "" when it is."""
    wanted = network_labels(cluster, namespace, network)
    differ = sorted(k for k, v in wanted.items() if found.get(k) != v)
    if not differ:
        return ""
    whose = f"network {network!r} of namespace" if network else "network of namespace"
    return (
        f"a network named {name!r} already exists but is not portway's {whose} "
        f"{namespace!r} (labels differ: {', '.join(differ)}); remove or rename it"
    )


def networks_held(engine: str, networks: Sequence[EngineNetwork]) -> ExitStack:
    """Hold the locks (``network_lock``) of all ``networks`` of one engine, in
    name order, so two creates holding some each never wait for each other."""
    stack = ExitStack()
    for name in sorted({n.name for n in networks}):
        stack.enter_context(network_lock(engine, name))
    return stack


_NETWORK_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_NETWORK_LOCKS_GUARD = threading.Lock()


def network_lock(engine: str, network: str) -> threading.Lock:
    """One lock per network of one engine, shared by every driver instance in
    this process (two targets may share an engine). Creating a replica on the
    network and removing the network once no replica uses it both hold it, so
    a network is never removed between its check and a new replica's create."""
    with _NETWORK_LOCKS_GUARD:
        return _NETWORK_LOCKS.setdefault((engine, network), threading.Lock())

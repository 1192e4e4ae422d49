"""Pod JSON (as the API server returns it) -> portway's ``ReplicaStatus``.

Pure, so it is tested against recorded object shapes. Portway's Pods run with
``restartPolicy: Never`` (the controller owns restarts), so a container's
first termination ends the Pod: phase ``Succeeded``/``Failed`` is *exited*.

How Kubernetes' states map (see docs/kubernetes-driver.md for the table):

- a Pod still held by portway's scheduling gate is *created* (made, not started);
- running container -> *running* (phase Running; readiness is portway's probe's);
- terminated container or terminal phase -> *exited*, with the container's
  exit code, reason (``OOMKilled`` -> ``oom_killed``) and times; an evicted
  Pod (``status.reason: Evicted``) or one stopped by portway's deadline
  (``DeadlineExceeded``) says so in ``error``;
- a container that cannot start (image missing under ``imagePullPolicy:
  Never``, bad config) -> *exited* without an exit code and with the kubelet's
  reason, so the controller's restart backoff applies as for a crash;
- Pending (unscheduled, pulling, ContainerCreating) and CrashLoopBackOff ->
  *restarting*: the cluster is working on it, look again soon;
- a Pod being deleted -> *removing*; phase Unknown (node lost) -> *unknown*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portway.drivers.base import Handle, PublishedPort, ReplicaState, ReplicaStatus
from portway.drivers.engine_common import Json, labels, obj, parse_engine_time, text

DRIVER_NAME = "kubernetes"
#: the scheduling gate a created-but-not-started Pod carries (see pods.py)
START_GATE = "portway.dev/start"

#: waiting reasons of a container that will not start without a change: the
#: replica is reported exited (no exit code) so the controller backs off
START_FAILURES = frozenset(
    {
        "ErrImageNeverPull",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreCreateHookError",
        "PostStartHookError",
    }
)


@dataclass(frozen=True)
class PodView:
    """What portway reads from one Pod, before it becomes a ``ReplicaStatus``."""

    name: str
    uid: str
    labels: Mapping[str, str]
    state: ReplicaState
    phase: str
    reason: str = ""  # the most telling reason: Evicted, OOMKilled, ImagePullBackOff, ...
    message: str = ""
    exit_code: int | None = None
    oom_killed: bool = False
    restarts: int = 0  # the kubelet's restartCount (0 under restartPolicy Never)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pod_ip: str = ""
    host_ip: str = ""
    node: str = ""
    image: str = ""
    ports: tuple[PublishedPort, ...] = ()
    resource_version: str = ""

    @property
    def error(self) -> str:
        if not self.reason:
            return self.message
        return f"{self.reason}: {self.message}" if self.message else self.reason

    def replica_status(self, target: str) -> ReplicaStatus:
        return ReplicaStatus(
            handle=Handle(driver=DRIVER_NAME, target=target, id=self.name, name=self.name),
            labels=self.labels,
            state=self.state,
            exit_code=self.exit_code,
            oom_killed=self.oom_killed,
            error=self.error,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            ports=self.ports,
            image=self.image,
        )


def _time(value: Any) -> datetime | None:
    return parse_engine_time(text(value))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _main_container_status(status: Json) -> Json:
    statuses = status.get("containerStatuses")
    if isinstance(statuses, list) and statuses:
        return obj(statuses[0])
    return {}


def _condition(status: Json, kind: str) -> Json:
    for item in status.get("conditions") or []:
        if obj(item).get("type") == kind:
            return obj(item)
    return {}


def _ports(pod: Json) -> tuple[PublishedPort, ...]:
    """hostPort -> the node's address (or the hostIP asked for); a port
    without one -> the Pod's IP and the container port, which is where it
    is reachable from inside the cluster network."""
    spec, status = obj(pod.get("spec")), obj(pod.get("status"))
    containers = spec.get("containers")
    container = obj(containers[0]) if isinstance(containers, list) and containers else {}
    pod_ip, node_ip = text(status.get("podIP")), text(status.get("hostIP"))
    out: list[PublishedPort] = []
    for raw in container.get("ports") or []:
        port = obj(raw)
        number = _int(port.get("containerPort"))
        if number is None:
            continue
        protocol = (text(port.get("protocol")) or "TCP").lower()
        host_port = _int(port.get("hostPort"))
        if host_port:
            asked = text(port.get("hostIP"))
            address = asked if asked and asked not in ("0.0.0.0", "::") else node_ip  # noqa: S104
            if address:
                out.append(PublishedPort(number, protocol, address, host_port))
        elif pod_ip:
            out.append(PublishedPort(number, protocol, pod_ip, number))
    return tuple(out)


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """Read one Pod object (a dict as decoded from the API's JSON)."""
    raw = obj(dict(pod))
    meta, spec, status = obj(raw.get("metadata")), obj(raw.get("spec")), obj(raw.get("status"))
    phase = text(status.get("phase")) or "Pending"
    main = _main_container_status(status)
    current = obj(main.get("state"))
    running, terminated, waiting = (
        obj(current.get("running")),
        obj(current.get("terminated")),
        obj(current.get("waiting")),
    )
    last_terminated = obj(obj(main.get("lastState")).get("terminated"))
    containers = spec.get("containers")
    spec_image = text(obj(containers[0]).get("image")) if isinstance(containers, list) else ""
    common: dict[str, Any] = {
        "name": text(meta.get("name")),
        "uid": text(meta.get("uid")),
        "labels": labels(meta.get("labels")),
        "phase": phase,
        "restarts": _int(main.get("restartCount")) or 0,
        "created_at": _time(meta.get("creationTimestamp")),
        "pod_ip": text(status.get("podIP")),
        "host_ip": text(status.get("hostIP")),
        "node": text(spec.get("nodeName")),
        "image": spec_image or text(main.get("image")),
        "ports": _ports(raw),
        "resource_version": text(meta.get("resourceVersion")),
    }
    pod_reason, pod_message = text(status.get("reason")), text(status.get("message"))

    if meta.get("deletionTimestamp"):
        return PodView(state=ReplicaState.REMOVING, reason="Terminating", **common)
    if terminated or phase in ("Succeeded", "Failed"):
        return _exited(common, phase, terminated, pod_reason, pod_message, waiting)
    if phase == "Unknown":
        return PodView(state=ReplicaState.UNKNOWN, reason=pod_reason, message=pod_message, **common)
    if running:
        return PodView(
            state=ReplicaState.RUNNING, started_at=_time(running.get("startedAt")), **common
        )
    gates = spec.get("schedulingGates") or []
    if any(obj(g).get("name") == START_GATE for g in gates):
        return PodView(state=ReplicaState.CREATED, **common)
    waiting_reason = text(waiting.get("reason"))
    if waiting_reason in START_FAILURES:
        return PodView(
            state=ReplicaState.EXITED,
            reason=waiting_reason,
            message=text(waiting.get("message")),
            **common,
        )
    if waiting_reason == "CrashLoopBackOff":
        code = _int(last_terminated.get("exitCode"))
        return PodView(
            state=ReplicaState.RESTARTING,
            reason=waiting_reason,
            message=text(waiting.get("message"))
            or (f"last exit code {code}" if code is not None else ""),
            started_at=_time(last_terminated.get("startedAt")),
            finished_at=_time(last_terminated.get("finishedAt")),
            **common,
        )
    scheduled = _condition(status, "PodScheduled")
    if scheduled.get("status") == "False":
        return PodView(
            state=ReplicaState.RESTARTING,
            reason=text(scheduled.get("reason")) or "Unscheduled",
            message=text(scheduled.get("message")),
            **common,
        )
    return PodView(
        state=ReplicaState.RESTARTING,
        reason=waiting_reason or "Pending",
        message=text(waiting.get("message")),
        **common,
    )


def _exited(
    common: dict[str, Any],
    phase: str,
    terminated: Json,
    pod_reason: str,
    pod_message: str,
    waiting: Json,
) -> PodView:
    exit_code = _int(terminated.get("exitCode"))
    reason = text(terminated.get("reason"))
    message = text(terminated.get("message"))
    if pod_reason in ("Evicted", "DeadlineExceeded", "Preempting", "NodeLost", "Shutdown"):
        # the Pod's own reason says why better than the container's "Error"
        reason, message = pod_reason, pod_message or message
    elif not terminated and text(waiting.get("reason")):
        reason, message = text(waiting.get("reason")), text(waiting.get("message"))
    if exit_code is None and phase == "Succeeded":
        exit_code = 0
    return PodView(
        state=ReplicaState.EXITED,
        reason="" if reason == "Completed" and exit_code == 0 else reason,
        message=message,
        exit_code=exit_code,
        oom_killed=text(terminated.get("reason")) == "OOMKilled",
        started_at=_time(terminated.get("startedAt")),
        finished_at=_time(terminated.get("finishedAt")),
        **common,
    )


def replica_status(pod: Mapping[str, Any], target: str) -> ReplicaStatus:
    return pod_view(pod).replica_status(target)

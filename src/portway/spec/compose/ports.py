"""Compose ``ports`` (short and long syntax, ranges, host_ip, protocol) as
portway port entries."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_port"]

_SHORT_RE = re.compile(
    r"^(?:(?:(?P<ip>\[[0-9a-fA-F:]+\]|[0-9.]+):)?(?P<pub>\d+(?:-\d+)?)?:)?"
    r"(?P<target>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$"
)


def _range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    start = int(first)
    end = int(last) if last else start
    if end < start:
        raise ValueError(f"port range {text} runs backwards")
    return list(range(start, end + 1))


def _entry(
    target: int, published: int | None, protocol: str, host_ip: str | None
) -> dict[str, Any]:
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol {protocol} is not supported (tcp or udp)")
    entry: dict[str, Any] = {"containerPort": target, "protocol": protocol}
    if published is not None:
        entry["hostPort"] = published
    if host_ip:
        entry["hostIp"] = host_ip.strip("[]")
    return entry


def parse_port(item: Any) -> list[dict[str, Any]]:
    """One ``ports`` item as portway ports; ValueError says what is wrong."""
    if isinstance(item, int):
        return [_entry(item, None, "tcp", None)]
    if isinstance(item, str):
        match = _SHORT_RE.match(item.strip())
        if match is None:
            raise ValueError(f"{item!r} is not [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]")
        targets = _range(match["target"])
        published = _range(match["pub"]) if match["pub"] else None
        if published is not None and len(published) not in (1, len(targets)):
            raise ValueError(f"{item!r}: published and target ranges differ in length")
        proto = match["proto"] or "tcp"
        out = []
        for i, target in enumerate(targets):
            pub = None if published is None else published[i if len(published) > 1 else 0]
            out.append(_entry(target, pub, proto, match["ip"]))
        return out
    if isinstance(item, dict):
        long_target = item.get("target")
        if not isinstance(long_target, int | str) or isinstance(long_target, bool):
            raise ValueError("a long-syntax port needs 'target'")
        long_published = item.get("published")
        protocol = str(item.get("protocol") or "tcp")
        pubs = _range(str(long_published)) if long_published not in (None, "") else None
        entry = _entry(int(long_target), pubs[0] if pubs else None, protocol, item.get("host_ip"))
        if item.get("name"):
            entry["name"] = str(item["name"])
        return [entry]
    raise ValueError(f"a port is a string, a number or a mapping, got {type(item).__name__}")

"""Fast reading of a streamed HTTP body (Docker's and Podman's log and exec
streams) as pieces of bytes, as soon as they arrive.

Why not urllib3's ``read``: Docker sends each log line as its own HTTP chunk,
and urllib3 plus http.client spend several Python calls per chunk (about
10 µs), which capped ``portway logs -f`` at a third of ``docker logs -f``.
Here the socket's buffered file is read in large blocks and the chunked
framing is undone with ``bytes.find`` over the block, so a burst of a
thousand lines costs a handful of calls. When the response is not what this
reader understands (already partly read, another HTTP library), the caller
falls back to urllib3's reads.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

#: bytes asked of the socket per read; ``read1`` returns what has arrived,
#: so a quiet stream still yields each line as soon as it comes
BLOCK = 65536


def body_pieces(response: Any) -> Iterator[bytes] | None:
    """The body of a ``requests`` streamed response in pieces, or None when
    its socket cannot be read directly (the caller then uses urllib3)."""
    raw = getattr(response, "raw", None)
    message = getattr(raw, "_fp", None)
    if not isinstance(message, http.client.HTTPResponse):
        return None
    sock_file = message.fp
    if sock_file is None or not hasattr(sock_file, "read1"):
        return None
    if getattr(raw, "_fp_bytes_read", 0) or message.chunk_left is not None:
        return None  # someone read part of the body through http.client already
    if getattr(raw, "_decoder", None) is not None or _encoded(response):
        return None
    if message.chunked:
        return _dechunked(sock_file)
    if message.length is None:  # the body runs until the engine closes
        return _until_closed(sock_file)
    return None


def _encoded(response: Any) -> bool:
    headers = getattr(response, "headers", {}) or {}
    return str(headers.get("Content-Encoding", "identity")).lower() not in ("", "identity")


def _until_closed(sock_file: Any) -> Iterator[bytes]:
    while True:
        block = sock_file.read1(BLOCK)
        if not block:
            return
        yield block


def _dechunked(sock_file: Any) -> Iterator[bytes]:
    """HTTP/1.1 chunked transfer coding undone; yields the payload of every
    complete chunk in each block read (joined), ends at the last chunk."""
    buffer = b""
    while True:
        block = sock_file.read1(BLOCK)
        if not block:
            return
        buffer = buffer + block if buffer else block
        payloads: list[bytes] = []
        position, finished = 0, False
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(buffer[position:line_end].split(b";", 1)[0], 16)
            start = line_end + 2
            if size == 0:
                finished = True
                break
            if start + size + 2 > len(buffer):
                break
            payloads.append(buffer[start : start + size])
            position = start + size + 2
        buffer = buffer[position:]
        if payloads:
            yield payloads[0] if len(payloads) == 1 else b"".join(payloads)
        if finished:
            return


def split_frames(pieces: Iterator[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    """Docker's multiplexed stream (8-byte header: stream id, 3 zero bytes,
    big-endian size; then the payload) cut out of body pieces: every frame
    complete in the data so far, as one list, so callers pay per read, not
    per line."""
    buffer = b""
    for piece in pieces:
        buffer = buffer + piece if buffer else piece
        position, end_of_data = 0, len(buffer)
        batch: list[tuple[int, bytes]] = []
        while end_of_data - position >= 8:
            size = int.from_bytes(buffer[position + 4 : position + 8], "big")
            end = position + 8 + size
            if end > end_of_data:
                break
            if size:
                batch.append((buffer[position], buffer[position + 8 : end]))
            position = end
        buffer = buffer[position:]
        if batch:
            yield batch

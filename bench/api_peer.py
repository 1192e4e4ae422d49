"""The peer of P7's API benchmark: the floor of serving one JSON document on uvicorn.

Serves ``GET <path>`` with the bytes of ``--body-file`` (the exact response
portway gave for the same request) after the same bearer check portway needs
(401 without the token in ``--token-file``), on uvicorn with the same loop and
HTTP parser portway's server gets (``auto``: uvloop and httptools when
installed), one worker, no access log. Two flavours:

- ``asgi`` (the peer of the RESULT): a bare ASGI callable, nothing between
  uvicorn and the bytes; what any Python server on uvicorn pays at least.
- ``fastapi``: one FastAPI route (``async def``) returning the same bytes, to
  show how much of portway's time is the framework rather than portway.

Usage: python bench/api_peer.py --port P --path /v1/... --body-file F --token-file F
           [--kind asgi|fastapi]
"""

from __future__ import annotations

import argparse
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNAUTHORIZED = b'{"error": {"code": "Unauthenticated", "message": "bearer token required"}}'


def authorized(header: bytes | None, expected: bytes) -> bool:
    return header is not None and hmac.compare_digest(header, expected)


def asgi_app(path: str, body: bytes, token: str) -> ASGIApp:
    expected = f"Bearer {token}".encode()
    ok_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    no_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(UNAUTHORIZED)),
        (b"www-authenticate", b"Bearer"),
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # uvicorn runs it with lifespan off
            return
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not authorized(auth, expected):
            await send({"type": "http.response.start", "status": 401, "headers": no_headers})
            await send({"type": "http.response.body", "body": UNAUTHORIZED})
        elif scope["path"] != path:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": ok_headers})
            await send({"type": "http.response.body", "body": body})

    return app


def fastapi_app(path: str, body: bytes, token: str) -> ASGIApp:
    from fastapi import FastAPI, Header, HTTPException, Response

    expected = f"Bearer {token}".encode()
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @api.get(path)
    async def one_workload(authorization: str | None = Header(default=None)) -> Response:
        if not authorized(None if authorization is None else authorization.encode(), expected):
            raise HTTPException(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
        return Response(body, media_type="application/json")

    return api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="the one path served")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--kind", choices=("asgi", "fastapi"), default="asgi")
    opts = parser.parse_args()
    body = opts.body_file.read_bytes()
    token = opts.token_file.read_text().strip()
    make = asgi_app if opts.kind == "asgi" else fastapi_app
    uvicorn.run(
        make(opts.path, body, token),
        host="127.0.0.1",
        port=opts.port,
        log_level="warning",
        access_log=False,
        lifespan="off" if opts.kind == "asgi" else "auto",
    )


if __name__ == "__main__":
    main()

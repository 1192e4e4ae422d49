"""One error body for every failure, and the HTTP status of each error family.

Body: ``{"error": {"code", "message", "issues": [{"message", "file", "path",
"document", "hint"}]}}``. Every ``PortwayError`` subclass maps to a status
here on purpose; a 500 means a bug in portway, never a refused request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from portway.errors import (
    AlreadyExistsError,
    ConflictError,
    DriverError,
    DriverNotFoundError,
    ForbiddenError,
    InputError,
    Issue,
    NotFoundError,
    PolicyError,
    PortwayError,
    ReplicaGoneError,
    SpecError,
    StoreError,
    TargetUnavailableError,
    TemporaryDriverError,
    UnauthenticatedError,
)
from portway.secrets import SecretUnreadableError

log = logging.getLogger(__name__)

NAME_RULE = (
    "a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)


class GoneError(PortwayError):
    """A watch's resume point is older than what the store keeps (HTTP 410)."""


class IssueBody(BaseModel):
    message: str
    file: str | None = None
    path: str = ""
    document: int | None = None
    hint: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable kind, e.g. Forbidden, NotFound.")
    message: str = Field(description="What was wrong and what to do, for a person.")
    issues: list[IssueBody] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorDetail


#: (error class, HTTP status, code), most specific first: the first match wins
_MAPPING: tuple[tuple[type[PortwayError], int, str], ...] = (
    (GoneError, 410, "Gone"),
    (UnauthenticatedError, 401, "Unauthenticated"),
    (ForbiddenError, 403, "Forbidden"),
    (PolicyError, 422, "PolicyViolation"),
    (SpecError, 422, "InvalidSpec"),
    (InputError, 422, "InvalidInput"),
    (DriverNotFoundError, 422, "UnknownDriver"),
    (NotFoundError, 404, "NotFound"),
    (ReplicaGoneError, 404, "ReplicaGone"),
    (AlreadyExistsError, 409, "AlreadyExists"),
    (ConflictError, 409, "Conflict"),
    (StoreError, 503, "StoreUnavailable"),
    (TargetUnavailableError, 503, "TargetUnavailable"),
    (TemporaryDriverError, 503, "EngineBusy"),
    # the key file does not open a stored value: the server's own state is
    # wrong (key replaced or store changed), not the request; the message
    # names the key file and never a value
    (SecretUnreadableError, 500, "SecretUnreadable"),
    # the engine behind a target refused or failed: the gateway's upstream
    (DriverError, 502, "EngineError"),
    # an operation the target cannot do ("cannot exec"): refused, not a bug
    (PortwayError, 422, "Refused"),
)

#: code of a plain HTTP status raised by FastAPI/Starlette themselves
_HTTP_CODES = {
    400: "BadRequest",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    410: "Gone",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "InvalidInput",
}


def status_of(exc: PortwayError) -> tuple[int, str]:
    for cls, status, code in _MAPPING:
        if isinstance(exc, cls):
            return status, code
    raise AssertionError("PortwayError itself is mapped")  # pragma: no cover


def error_body(code: str, message: str, issues: list[Issue] | None = None) -> dict[str, Any]:
    return ErrorBody(
        error=ErrorDetail(
            code=code,
            message=message,
            issues=[
                IssueBody(
                    message=i.message, file=i.file, path=i.path, document=i.document, hint=i.hint
                )
                for i in issues or []
            ],
        )
    ).model_dump()


def error_response(
    status: int,
    code: str,
    message: str,
    issues: list[Issue] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, issues), status_code=status, headers=headers)


def portway_error_response(exc: PortwayError) -> JSONResponse:
    status, code = status_of(exc)
    issues = exc.issues if isinstance(exc, InputError) else None
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, code, str(exc), issues, headers)


async def _on_portway_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PortwayError)
    return portway_error_response(exc)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "path", "query", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _issue_of(error: Mapping[str, Any]) -> Issue:
    """A readable issue for one pydantic error of a request part."""
    loc = tuple(error.get("loc", ()))
    part = str(loc[0]) if loc else "request"
    path = _field_path(loc)
    given = error.get("input")
    if error.get("type") == "string_pattern_mismatch" and part in ("path", "query"):
        text = f"{part} parameter {path} {given!r}: expected {NAME_RULE}"
    elif error.get("type") == "string_too_long" and part in ("path", "query"):
        text = f"{part} parameter {path}: {error.get('msg')} ({NAME_RULE})"
    else:
        text = f"{part} {path}: {error.get('msg')}" if path else f"{part}: {error.get('msg')}"
    return Issue(text, path=path)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "not JSON")
        where = first.get("loc", ("body", 0))
        position = where[1] if len(where) > 1 else 0
        return error_response(
            400, "MalformedJSON", f"request body is not valid JSON: {reason} at byte {position}"
        )
    issues = [_issue_of(e) for e in errors]
    message = "; ".join(i.message for i in issues) or "invalid request"
    return error_response(422, "InvalidInput", message, issues)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTPError")
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in a request", exc_info=exc)
    return error_response(500, "InternalError", "internal error (a bug in portway; see the log)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(PortwayError, _on_portway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

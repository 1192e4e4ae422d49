"""One place that turns the server's error answers into portway errors, so a
remote command fails with the same exit code and message as a local one.

Error body (docs/server.md): ``{"error": {"code", "message", "issues": [...]}}``.
"""

from __future__ import annotations

from typing import Any

import httpx

from portway.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    Issue,
    NotFoundError,
    PolicyError,
    PortwayError,
    TargetUnavailableError,
    UnauthenticatedError,
)


class ServerError(PortwayError):
    """The server failed (5xx other than 503): a bug or an outage there."""


class UnreachableError(PortwayError):
    """The server could not be reached at all (connection, TLS, timeout)."""


def _issues(raw: Any) -> list[Issue]:
    issues: list[Issue] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not item.get("message"):
            continue
        document = item.get("document")
        line = item.get("line")
        issues.append(
            Issue(
                message=str(item["message"]),
                file=str(item["file"]) if item.get("file") else None,
                document=document if isinstance(document, int) else None,
                path=str(item.get("path") or ""),
                line=line if isinstance(line, int) else None,
                hint=str(item["hint"]) if item.get("hint") else None,
            )
        )
    return issues


def _body(response: httpx.Response) -> tuple[str, str, list[Issue]]:
    """(code, message, issues) of an error answer, whatever its body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return (
            str(error.get("code", "")),
            str(error.get("message", "")),
            _issues(error.get("issues")),
        )
    if isinstance(data, dict) and "detail" in data:  # a framework default, not ours
        return "", str(data["detail"]), []
    text = response.text.strip()[:300]
    return "", text or response.reason_phrase, []


def error_from_response(response: httpx.Response) -> PortwayError:
    """The portway error an HTTP error answer stands for."""
    status = response.status_code
    code, message, issues = _body(response)
    where = f"{response.request.method} {response.request.url.path}"
    if status == 401:
        return UnauthenticatedError(
            (message or "the server refused the token")
            + "; check the context's token file (`portway context current`)"
        )
    if status == 403:
        return ForbiddenError(message or f"forbidden: {where}")
    if status == 404:
        return NotFoundError(message or f"not found: {where}")
    if status in (400, 413, 422):
        if issues:
            return PolicyError(issues) if code == "PolicyError" else InputError(issues)
        return InputError(message or f"the server refused the request ({status})")
    if status in (409, 410):
        return ConflictError(message or f"conflict: {where}")
    if status == 503:
        target, detail = _split_target(message)
        return TargetUnavailableError(target, detail or "unavailable")
    return ServerError(f"server error {status} on {where}" + (f": {message}" if message else ""))


def _split_target(message: str) -> tuple[str, str]:
    """``target 'docker': engine down`` (how DriverError renders) -> (docker, engine down),
    so the rebuilt error renders the same text and not the prefix twice."""
    prefix = "target '"
    end = message.find("': ", len(prefix))
    if message.startswith(prefix) and end > 0:
        return message[len(prefix) : end], message[end + 3 :]
    return "server", message

"""One root exception for everything portway reports to a user.

Messages say what was wrong, where (file, document, field path, line when
known) and what to do. No class here inherits from a client library's
exceptions: drivers translate backend errors with ``raise ... from e``.
"""

from __future__ import annotations

from dataclasses import dataclass


class PortwayError(Exception):
    """Root of every error portway raises on purpose."""

    #: process exit code the CLI uses for this family of errors
    exit_code = 1


# --- input ---------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem found in user input, located as precisely as we can."""

    message: str
    file: str | None = None
    document: int | None = None  # 1-based index in a multi-document file
    path: str = ""  # field path, e.g. ``spec.ports[1].containerPort``
    line: int | None = None  # 1-based
    hint: str | None = None  # e.g. "did you mean 'containerPort'?"
    subject: str | None = None  # the object in that document, e.g. "Deployment web"

    def location(self) -> str:
        parts: list[str] = []
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            parts.append(where)
        document = f"document {self.document}" if self.document is not None else ""
        if self.subject:
            document = f"{document} ({self.subject})".strip()
        if document:
            parts.append(document)
        if self.path:
            parts.append(self.path)
        return ", ".join(parts)

    def __str__(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class InputError(PortwayError):
    """User input (a file, a flag, a name) is invalid; nothing was changed."""

    exit_code = 2

    def __init__(self, issues: list[Issue] | Issue | str) -> None:
        if isinstance(issues, str):
            issues = [Issue(issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.issues) == 1:
            return str(self.issues[0])
        lines = [f"{len(self.issues)} problems:"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


class SpecError(InputError):
    """A workload file does not parse or does not validate."""


class PolicyError(InputError):
    """The spec is valid but policy forbids it (e.g. a bind mount)."""


# --- store ---------------------------------------------------------------


class StoreError(PortwayError):
    """The state store failed."""


class NotFoundError(StoreError):
    """The object does not exist."""

    exit_code = 3


class AlreadyExistsError(StoreError):
    """An object with that kind, namespace and name already exists."""


class ConflictError(StoreError):
    """A compare-and-swap write lost: the object changed since it was read."""


# --- drivers -------------------------------------------------------------


class DriverError(PortwayError):
    """A backend refused or failed an operation."""

    def __init__(self, target: str, message: str) -> None:
        self.target = target
        super().__init__(f"target {target!r}: {message}")


class TemporaryDriverError(DriverError):
    """Worth retrying later (engine down, timeout). ``delay`` is a hint in seconds."""

    def __init__(self, target: str, message: str, delay: float = 1.0) -> None:
        self.delay = delay
        super().__init__(target, message)


class TargetUnavailableError(TemporaryDriverError):
    """The backend cannot be reached."""


class PermanentDriverError(DriverError):
    """Retrying the same request will not help (bad image, bad config)."""


class ImageNotFoundError(PermanentDriverError):
    """The image is not present on the target and cannot be pulled."""


class PortInUseError(PermanentDriverError):
    """A published host port is already bound by something else."""


class ReplicaGoneError(DriverError):
    """The container behind a handle no longer exists."""


class DriverNotFoundError(PortwayError):
    """No driver is registered under that name, or its SDK is missing."""

    exit_code = 2


# --- access --------------------------------------------------------------


class UnauthenticatedError(PortwayError):
    """No token, or a token that is malformed, unknown, expired or revoked.

    The message never says which of these it was beyond what the caller sent:
    telling a guesser "right id, wrong secret" would help the guess."""

    exit_code = 4


class ForbiddenError(PortwayError):
    """The caller is known but no role binding allows the operation; the
    message names the subject, the missing permission and the namespace."""

    exit_code = 5

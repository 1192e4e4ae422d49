"""What the ingress reports when it cannot do what was asked.

Every error is a ``portway.errors.PortwayError`` (via ``IngressError``) and
says what was wrong, where, and what to do. When one is raised, the HAProxy
that was running goes on running its last good configuration.
"""

from __future__ import annotations

from portway.errors import InputError, Issue, PortwayError


class IngressError(PortwayError):
    """The ingress (portway's managed HAProxy) failed."""


class IngressConflictError(IngressError, InputError):
    """The state asks for something contradictory (``validate`` found problems)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__([Issue(p, path="ingress") for p in problems])


class IngressConfigError(IngressError):
    """``haproxy -c`` refused the rendered configuration; nothing was replaced."""

    def __init__(self, candidate: str, output: str) -> None:
        self.candidate = candidate
        self.output = output
        alerts = [line for line in output.splitlines() if "[ALERT]" in line]
        shown = "\n".join(alerts or output.splitlines()[-5:])
        super().__init__(
            f"haproxy -c refused the new ingress configuration ({candidate}); "
            f"the running one was kept:\n{shown}"
        )


class IngressPortInUseError(IngressError):
    """A listen address of a route is already bound by another process."""

    def __init__(self, listen: str, port: int, detail: str = "") -> None:
        self.listen = listen
        self.port = port
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"ingress cannot listen on {listen}: port {port} is already in use by another "
            f"process{extra}; free the port or route the service to another one"
        )


class IngressProcessError(IngressError):
    """HAProxy could not be found, started, reloaded or stopped."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        text = message if not log_tail else f"{message}\nlast lines of HAProxy's log:\n{log_tail}"
        super().__init__(text)


class IngressRuntimeError(IngressError):
    """HAProxy's runtime API refused or could not take a command."""

    def __init__(self, command: str, response: str) -> None:
        self.command = command
        self.response = response
        super().__init__(f"HAProxy runtime API refused {command!r}: {response.strip()!r}")

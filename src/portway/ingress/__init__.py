"""The ingress data plane: a HAProxy that portway runs and drives from data.

The controller builds an ``IngressState`` (routes, backends, endpoints)
whenever endpoints change and calls ``IngressManager.apply(state)``.
Endpoint changes go through HAProxy's runtime API; structural changes
rewrite the config, check it with ``haproxy -c`` and reload seamlessly.
See docs/ingress.md.

Imports nothing from portway but ``portway.errors``.
"""

from portway.ingress.errors import (
    IngressConfigError,
    IngressConflictError,
    IngressError,
    IngressPortInUseError,
    IngressProcessError,
    IngressRuntimeError,
)
from portway.ingress.manager import Action, ApplyResult, IngressManager
from portway.ingress.model import (
    AdminState,
    Backend,
    Endpoint,
    HealthCheck,
    IngressSettings,
    IngressState,
    Mode,
    OpState,
    Route,
    ServerState,
)
from portway.ingress.validate import validate

__all__ = [
    "Action",
    "AdminState",
    "ApplyResult",
    "Backend",
    "Endpoint",
    "HealthCheck",
    "IngressConfigError",
    "IngressConflictError",
    "IngressError",
    "IngressManager",
    "IngressPortInUseError",
    "IngressProcessError",
    "IngressRuntimeError",
    "IngressSettings",
    "IngressState",
    "Mode",
    "OpState",
    "Route",
    "ServerState",
    "validate",
]

"""The HTTP API: FastAPI routes over the service layer.

Only ``portway.api`` and ``portway.cli`` import FastAPI, Starlette or uvicorn.
Every route authenticates (except ``/healthz``), authorizes through
``portway.access.rbac`` and calls the same service functions the CLI uses.
"""

from portway.api.app import create_app
from portway.api.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]

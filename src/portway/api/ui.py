"""The web dashboard: static files under ``/ui/``, and ``/`` sending there.

The files (``api/dashboard/``: HTML, CSS, ES modules, no build step) are
served without a token because they hold no data: the page asks for a token
and reads everything through the public JSON API with it, so the dashboard
can show nothing the token could not fetch with ``curl``. The headers keep
the page from running anything but its own files (no inline script, no
other origin), which is what makes "escape every value" hold even if a
workload's name or log line tried to be markup.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: where the files are, shipped as package data (pyproject's package-data)
STATIC_DIR = Path(__file__).parent / "dashboard"
MOUNT = "/ui"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # revalidate every time (cheap: ETag), so an upgraded server's page is never stale
    "Cache-Control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """``StaticFiles`` with the dashboard's security and caching headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install(api: FastAPI) -> None:
    """Mount the dashboard at ``/ui/`` and redirect ``/`` to it."""
    api.mount(MOUNT, DashboardFiles(directory=STATIC_DIR, html=True), name="dashboard")

    @api.get("/", include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        # url_for keeps a proxy's root path, so /prefix/ leads to /prefix/ui/
        return RedirectResponse(str(request.url_for("dashboard", path="/")), status_code=307)

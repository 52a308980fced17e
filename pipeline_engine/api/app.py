"""The application: routers by domain (``graphs``, ``runs``, ``system``), one error shape,
a body limit enforced before anything is parsed, and an access log of one JSON object per
request (the token's name, never the token)."""
from __future__ import annotations

import logging
import time

import simplejson
from fastapi import FastAPI, Response

from pipeline_engine import __version__
from pipeline_engine.api import auth, errors
from pipeline_engine.metrics import Metrics
from pipeline_engine.db import Database
from pipeline_engine.errors import TooLargeError
from pipeline_engine.settings import DEFAULT_BODY_LIMIT

access_log = logging.getLogger("pipeline_engine.access")

API = "/api/v1"


class _BodyLimit:
    """Answer 413 to a body over ``limit`` bytes: at once when its Content-Length says so,
    else as soon as the bytes read pass it (a chunked body), before the handler parses it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        too_large = f"the request's body is over the limit of {self.limit} bytes"
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > self.limit:
                response = errors.respond(413, "too_large", too_large)
                return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLargeError(too_large)
            return message

        return await self.app(scope, limited, send)


class _AccessLog:
    """One JSON line per request (method, path, status, milliseconds, the caller's token name),
    and the request counted in the metrics by its route (the path's template: ``/runs/{run_id}``)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        status = [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = time.perf_counter() - began
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if route.startswith("/") and not route.startswith(("/api/", "/metrics")):
                route = API + route  # a route of the API's routers, its prefix left out
            self.metrics.observe(scope["method"], route, status[0], took)
            if access_log.isEnabledFor(logging.INFO):
                caller = getattr(scope.get("state", {}).get("caller"), "name", None)
                client = scope.get("client")
                access_log.info(simplejson.dumps({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "method": scope["method"], "path": scope["path"],
                    "status": status[0], "ms": round(took * 1000, 2),
                    "token": caller, "client": client[0] if client else None}))


def _docs(app: FastAPI) -> None:
    """The interactive documentation at /api/docs, its scripts and styles served from the
    package ``swagger_ui_bundle`` installs: nothing is fetched from another site."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = "/api/docs/assets"
    app.mount(assets, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/api/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=f"{API}/openapi.json", title="pipeline_engine API",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon-32x32.png")


def create_app(db: Database, *, body_limit: int = DEFAULT_BODY_LIMIT, logs: str | None = None,
               worker=None, public_metrics: bool = False) -> FastAPI:
    """The API over ``db``. ``logs``: the log files' directory on this machine (the logs of
    runs deleted through the API are removed from it). ``worker``: the ``Worker`` this process
    runs (``serve`` without ``--no-worker``): runs with secret inputs are handed to it.
    ``public_metrics``: ``/metrics`` answers without a token."""
    from pipeline_engine import web
    from pipeline_engine.api import admin, events, graphs, runs, schedules, system

    app = FastAPI(title="pipeline_engine", version=__version__, openapi_url=f"{API}/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Define, start, watch and steer runs of sealed graphs. Every call but"
                              " `/api/v1/health` needs `Authorization: Bearer TOKEN`"
                              " (`pipeline-engine token create NAME --role ROLE`).")
    app.state.db = db
    app.state.logs = logs
    app.state.worker = worker
    errors.install(app)
    _docs(app)
    app.state.metrics = metrics = Metrics(db)

    @app.get("/metrics", include_in_schema=False)
    def scrape():
        data, kind = metrics.text()
        return Response(data, media_type=kind)
    for module in (system, graphs, runs, events, schedules, admin):
        app.include_router(module.router, prefix=API)
    web.install(app)
    # outermost last: the access log sees every answer; a token is checked before the body is read
    app.add_middleware(_BodyLimit, limit=body_limit)
    app.add_middleware(auth.Authenticate, db=db, public_metrics=public_metrics)
    app.add_middleware(_AccessLog, metrics=metrics)
    return app

"""Every error as one JSON shape, its status and type taken from the error's class (never from
its message): ``{"error": {"type", "message", "problems"}}``. Nothing else reaches a client:
no traceback, no driver message beyond what the error classes carry."""
from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipeline_engine.errors import PipelineEngineError

log = logging.getLogger("pipeline_engine.api")

#: the type word of a status the framework answers with itself (an unknown path, a wrong method)
_TYPES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
          413: "too_large", 415: "validation", 503: "unavailable"}

#: the error body in the OpenAPI document
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["type", "message", "problems"], "properties": {
        "type": {"type": "string", "enum": ["validation", "not_found", "conflict", "unauthorized", "forbidden",
                                            "too_large", "unavailable", "method_not_allowed", "internal"]},
        "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "string"}}}}},
}


def body(kind: str, message: str, problems: list[str] | None = None) -> dict:
    return {"error": {"type": kind, "message": message, "problems": problems if problems is not None else [message]}}


def respond(status: int, kind: str, message: str, problems: list[str] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body(kind, message, problems), status_code=status, headers=headers)


def _answer(request: Request, status: int, kind: str, message: str, problems: list[str] | None = None,
            headers: dict[str, str] | None = None):
    """The error as JSON, or as a page for a path of the web UI's pages."""
    pages = getattr(request.app.state, "pages", None)
    if pages is not None and pages.owns(request.url.path):
        return pages.page(request, status, message, problems if problems is not None else [message])
    return respond(status, kind, message, problems, headers)


def _ours(request: Request, exc: PipelineEngineError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return _answer(request, exc.http_status, exc.kind, exc.message, exc.problems, headers)


def _where(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) if parts else "body"


def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'not valid')}" for e in exc.errors()]
    return _answer(request, 422, "validation", problems[0] if problems else "the request is not valid", problems)


def _allowed(request: Request) -> str:
    """Every method the OpenAPI document gives the path (the router names only its first route's)."""
    app = request.app
    table = getattr(app.state, "allowed", None)
    if table is None:  # once: each documented path as a pattern, with its methods
        table = app.state.allowed = [
            (re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$"),
             {m.upper() for m in item}) for path, item in app.openapi()["paths"].items()]
    methods = set().union(*(found for pattern, found in table if pattern.match(request.url.path)))
    return ", ".join(sorted(methods))


def _http(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "the request failed"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 400:  # a body the framework could not decode: a request not valid, as any
        return _answer(request, 422, "validation", f"the request's body cannot be read: {message}")
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed(request)}
        message = f"{request.method} is not allowed here: {headers['Allow']}"
    return _answer(request, exc.status_code, _TYPES.get(exc.status_code, "validation"), message, headers=headers)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # a defect: logged here with its traceback, never shown to the client
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _answer(request, 500, "internal", "internal error: the server's log says more")


def install(app: FastAPI) -> None:
    app.add_exception_handler(PipelineEngineError, _ours)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)

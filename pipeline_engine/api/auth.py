"""Who is calling. Every path under ``/api/v1`` but the health check and the OpenAPI document
needs a bearer token, and so does ``/metrics`` unless the server makes it public: ``Authenticate`` (middleware) finds the token's name and role before
anything else of the request is read, so a client without a valid token learns nothing but
401 whatever it sends. Each handler then names the least role it admits (``caller:
auth.Operator``), checked in one dependency: a role too small is 403."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer

from pipeline_engine import actors, service
from pipeline_engine.api import errors
from pipeline_engine.errors import ForbiddenError, PipelineEngineError
from pipeline_engine.roles import Role

#: the web UI's session cookie (``pipeline_engine.web.auth``): it admits reads (GET) of the API
#: for the pages' scripts; a change always needs a bearer token (or a page's form, with its CSRF token)
SESSION_COOKIE = "pe_session"

#: paths that need no token (the OpenAPI document describes the API; it holds no data)
PUBLIC = {"/api/v1/health", "/api/v1/openapi.json"}

#: declares the scheme in the OpenAPI document; ``Authenticate`` does the checking
_bearer = HTTPBearer(auto_error=False, description="a token from `pipeline-engine token create NAME --role ROLE`")


@dataclass(frozen=True)
class Caller:
    #: the token's name (what the audit log and the access log show; never the token)
    name: str
    role: Role


def _token(scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _session(scope) -> str | None:
    """The page session's cookie the request carries, if any."""
    from http.cookies import CookieError, SimpleCookie

    for key, value in scope.get("headers") or ():
        if key == b"cookie":
            try:
                found = SimpleCookie(value.decode("latin-1")).get(SESSION_COOKIE)
            except CookieError:
                return None
            return found.value if found is not None and found.value else None
    return None


class Authenticate:
    """401 for a request under ``/api/v1`` (but ``PUBLIC``) without a known token; else the
    caller goes into the request's state for the handlers and the access log."""

    def __init__(self, app, db, public_metrics: bool = False):
        self.app, self.db, self.public_metrics = app, db, public_metrics

    def _guarded(self, path: str) -> bool:
        if path == "/metrics":  # any token's role may read it (viewer is the least), or none if public
            return not self.public_metrics
        return path.startswith("/api/v1/") and path not in PUBLIC

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self._guarded(scope["path"]):
            return await self.app(scope, receive, send)
        token = _token(scope)
        cookie = _session(scope) if token is None and scope["method"] in ("GET", "HEAD") else None
        try:
            if cookie is not None:  # a page's script reading (never changing) through its session
                info = await run_in_threadpool(service.session_caller, self.db, cookie)
            else:
                info = None if token is None else await run_in_threadpool(service.authenticate, self.db, token)
        except PipelineEngineError as exc:  # the database does not answer: 503, as any call would
            return await errors.respond(exc.http_status, exc.kind, exc.message, exc.problems)(scope, receive, send)
        if info is None:
            message = ("no token: send 'Authorization: Bearer TOKEN' (pipeline-engine token create)" if token is None
                       else "the token is not known (revoked, or never made)")
            response = errors.respond(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        state = scope.setdefault("state", {})
        state["caller"] = Caller(info.name, Role(info.role))
        with actors.acting_as(info.name):  # what the request changes, the audit log says this token did
            return await self.app(scope, receive, send)


def need(role: Role):
    """A dependency that admits a caller whose token's role allows what ``role`` may do."""

    def caller(request: Request, _: Annotated[object, Depends(_bearer)]) -> Caller:
        found: Caller = request.state.caller
        if not found.role.allows(role):
            raise ForbiddenError(f"token '{found.name}' has role {found.role.value}: this needs {role.value}"
                                 " or above")
        return found

    return caller


#: a handler's parameter ``caller: auth.Viewer`` admits viewers and every role above
Viewer = Annotated[Caller, Depends(need(Role.viewer))]
Operator = Annotated[Caller, Depends(need(Role.operator))]
Editor = Annotated[Caller, Depends(need(Role.editor))]
Admin = Annotated[Caller, Depends(need(Role.admin))]

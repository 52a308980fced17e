"""Who is looking at a page. A session cookie (``pe_session``: HttpOnly, SameSite=Strict,
Secure over HTTPS) made at ``/login`` from an API token carries the token's name and role;
a page without one sends the browser to ``/login``. A form that changes state carries the
session's CSRF token and is refused without it; its action needs the same role as the API's
route for it, checked here in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from pipeline_engine import actors, service
from pipeline_engine.api.auth import SESSION_COOKIE as COOKIE
from pipeline_engine.errors import ForbiddenError
from pipeline_engine.roles import Role

#: the login form's own double-submit token (there is no session yet to derive one from)
LOGIN_COOKIE = "pe_login"


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller of a page: the token's name and role, and the session's CSRF token."""

    name: str
    role: Role
    csrf: str

    def may(self, role: str) -> bool:
        return self.role.allows(Role(role))


class SignInNeeded(Exception):
    """No live session: the page sends the browser to the login page, and back after it."""

    def __init__(self, then: str):
        super().__init__(then)
        self.then = then


def login_address(then: str) -> str:
    return "/login" if then in ("", "/") else f"/login?next={quote(then, safe='/')}"


def safe_next(then: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or a URL)."""
    if not then or not then.startswith("/") or then.startswith("//") or "\\" in then or then.startswith("/login"):
        return "/"
    return then


def caller_of(request: Request) -> Viewer | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    info = service.session_caller(request.app.state.db, cookie)
    return None if info is None else Viewer(info.name, Role(info.role), service.csrf_token(cookie))


def _signed_in(request: Request) -> Viewer:
    found = caller_of(request)
    if found is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInNeeded(request.url.path + query)
    request.state.caller = found  # the access log names the token
    return found


Page = Annotated[Viewer, Depends(_signed_in)]


async def acting(request: Request, caller: Viewer, role: Role) -> dict[str, str]:
    """The form a state-changing request sent, once its CSRF token and the caller's role are
    checked (403 otherwise, and nothing changes)."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not service.csrf_matches(request.cookies.get(COOKIE, ""), values.get("csrf")):
        raise ForbiddenError("the form's CSRF token is missing or wrong: reload the page and send it again")
    if not caller.role.allows(role):
        raise ForbiddenError(f"token '{caller.name}' has role {caller.role.value}: this needs {role.value} or above")
    return values


def as_actor(caller: Viewer):
    """What the request changes, the audit log says this token did."""
    return actors.acting_as(caller.name)

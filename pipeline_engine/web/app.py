"""How the pages join the API's application: their routes, their static files, a login
redirect for a page without a session, HTML error pages for page paths (the API keeps its JSON
errors), and the security headers of every page."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from pipeline_engine.web import auth, pages
from pipeline_engine.web.render import render_error

STATIC = Path(__file__).with_name("static")

#: no inline script or style, nothing from another site, no framing, forms post here only
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
          " font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = [(b"content-security-policy", POLICY.encode()), (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]


def owns(path: str) -> bool:
    """A path of the pages (not the API's, its documents', or the metrics')."""
    return not (path.startswith("/api/") or path == "/api" or path == "/metrics")


class _Secure:
    """The security headers on every answer of a page path."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not owns(scope["path"]):
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        return await self.app(scope, receive, sending)


class Errors:
    """An error of a page path, as a page (the service's message, the status the API gives)."""

    owns = staticmethod(owns)

    @staticmethod
    def page(request: Request, status: int, message: str, problems: list[str]):
        caller = getattr(request.state, "caller", None)
        return render_error(request, caller if isinstance(caller, auth.Viewer) else None, status, message, problems)


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.state.pages = Errors()

    @app.exception_handler(auth.SignInNeeded)
    def sign_in(request: Request, exc: auth.SignInNeeded):
        return RedirectResponse(auth.login_address(exc.then), status_code=303)

    app.add_middleware(_Secure)

"""Page sessions: a token given at ``/login`` is exchanged for a session cookie. The cookie is
256 random bits; the database keeps its SHA-256, so neither the cookie nor the token is ever
stored. A session has its token's name and role (read at every request: a token revoked ends
its sessions at once) and lasts ``LIFETIME``. Its CSRF token is an HMAC of the cookie, so it
needs no storage and cannot be turned back into the cookie."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from pipeline_engine import store
from pipeline_engine.db import Database
from pipeline_engine.errors import UnauthorizedError
from pipeline_engine.service._base import _audit, _write
from pipeline_engine.service.tokens import authenticate, digest
from pipeline_engine.views import TokenInfo

#: how long a session lasts after its sign-in
LIFETIME = timedelta(hours=12)
_COOKIE_BYTES = 32


def sign_in(db: Database, token: str) -> tuple[str, TokenInfo]:
    """A new session for the caller of ``token``: (the cookie's value, the token's info).
    UnauthorizedError when the token is not known. Expired sessions are deleted on the way."""
    info = authenticate(db, token.strip())
    if info is None:
        raise UnauthorizedError("the token is not known (revoked, or never made)")
    cookie = secrets.token_urlsafe(_COOKIE_BYTES)
    at = store.now()
    with _write(db) as s:
        found = store.find_token(s, info.name)
        if found is None:  # revoked in between
            raise UnauthorizedError("the token is not known (revoked, or never made)")
        store.delete_sessions(s, expired_before=at)
        store.add_session(s, found.id, digest(cookie), at + LIFETIME)
        _audit(s, "session.create", info.name)
    return cookie, info


def session_caller(db: Database, cookie: str) -> TokenInfo | None:
    """The token (name, role) of the live session whose cookie is ``cookie``, else None."""
    if not cookie or len(cookie) > 100:
        return None
    with db.connection(write=False) as conn:
        with conn.begin():
            found = store.session_by_digest(conn, digest(cookie), store.now())
    return None if found is None else TokenInfo(found[1], found[2], None, None)


def sign_out(db: Database, cookie: str) -> None:
    """End the session of ``cookie`` (nothing when there is none)."""
    if not cookie or len(cookie) > 100:
        return
    with _write(db) as s:
        store.delete_session(s, digest(cookie))


def csrf_token(cookie: str) -> str:
    """The CSRF token of the session ``cookie``: every form that changes state carries it."""
    return hmac.new(cookie.encode(), b"pipeline_engine csrf", hashlib.sha256).hexdigest()


def csrf_matches(cookie: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(cookie), sent or "")

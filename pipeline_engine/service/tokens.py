"""API tokens: made, listed, revoked, and a request's token checked. A token is shown once,
when it is made; the database keeps only its SHA-256 (a token is 256 random bits, so a fast
hash cannot be reversed by guessing), and nothing here logs it."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from pipeline_engine import roles, store
from pipeline_engine.db import Database
from pipeline_engine.errors import AlreadyExistsError, NotFoundError
from pipeline_engine.service._base import _audit, _write
from pipeline_engine.spec import GRAPH_NAME, check_name
from pipeline_engine.views import TokenInfo

#: what every token starts with, so that a leaked one is recognisable (secret scanners)
PREFIX = "pe_"
#: a token's last use is written at most this often
TOUCH_EVERY = timedelta(seconds=60)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _info(t) -> TokenInfo:
    return TokenInfo(t.name, t.role, t.created_at, t.last_used_at)


def create_token(db: Database, name: str, role: str) -> tuple[TokenInfo, str]:
    """Make a token named ``name`` with ``role``; returns it with the token itself, which is
    never shown again."""
    check_name("token", name, GRAPH_NAME)
    role = roles.parse(role).value
    token = PREFIX + secrets.token_urlsafe(32)
    with _write(db) as s:
        if store.find_token(s, name) is not None:
            raise AlreadyExistsError(f"token '{name}' already exists (revoke it first to replace it)")
        info = _info(store.add_token(s, name, role, digest(token)))
        _audit(s, "token.create", name, f"role {role}")
        return info, token


def list_tokens(db: Database) -> list[TokenInfo]:
    with db.transaction(write=False) as s:
        return [_info(t) for t in store.list_tokens(s)]


def any_token(db: Database) -> bool:
    with db.transaction(write=False) as s:
        return store.count_tokens(s) > 0


def revoke_token(db: Database, name: str) -> None:
    """Delete the token ``name``: requests carrying it are refused from now on."""
    with _write(db) as s:
        token = store.find_token(s, name)
        if token is None:
            raise NotFoundError(f"token '{name}' not found")
        store.delete_sessions(s, token_id=token.id)  # its page sessions end with it
        store.delete_token(s, token)
        _audit(s, "token.revoke", name)


def authenticate(db: Database, token: str) -> TokenInfo | None:
    """The token a request carries, or None when no token is that one (never made, or
    revoked). Notes its use (at most once a minute per token)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with db.connection(write=False) as conn:
        with conn.begin():
            found = store.token_by_digest(conn, digest(token))
    if found is None:
        return None
    token_id, name, role, last_used = found
    at = store.now()
    if last_used is None or at - last_used >= TOUCH_EVERY:
        with db.connection(write=True) as conn:
            with conn.begin():
                store.touch_token(conn, token_id, at, at - TOUCH_EVERY)
        last_used = at
    return TokenInfo(name, role, None, last_used)

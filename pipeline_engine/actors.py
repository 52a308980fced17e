"""Who is acting: the name the audit log and a run's ``started_by`` record. The front sets it
for what it does (the CLI ``cli:USER@HOST`` for its process, the API the token's name for each
request); Python code that sets nothing acts as ``python:USER@HOST``. Pure: no database."""
from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTOR: ContextVar[str | None] = ContextVar("pipeline_engine_actor", default=None)
#: the longest name the database keeps
LENGTH = 255


def local(kind: str) -> str:
    """``KIND:USER@HOST`` for this process (the user's id when it has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    return f"{kind}:{user}@{socket.gethostname()}"[:LENGTH]


def current() -> str:
    """The actor set for this context, else ``python:USER@HOST``."""
    return _ACTOR.get() or local("python")


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Act as ``actor`` inside the block (a CLI command, an API request)."""
    token = _ACTOR.set(actor[:LENGTH])
    try:
        yield
    finally:
        _ACTOR.reset(token)

"""``pipeline-engine serve``: the API on uvicorn, and (unless told not to) a worker in the same
process, so that one command on one machine is the whole system.

Order of a start: the socket is bound first (a port in use is a clear error before anything
runs), then the worker starts, then the server answers. SIGTERM or Ctrl-C stops the server
(open requests get a few seconds) and then the worker, by the worker's rules: running tracks
get the grace period; a second signal ends them at once."""
from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable

import uvicorn

from pipeline_engine import service
from pipeline_engine.api.app import create_app
from pipeline_engine.db import Database
from pipeline_engine.errors import AlreadyExistsError, SettingError

log = logging.getLogger("pipeline_engine.api")

#: seconds open requests (a followed log, an event stream) get once the server is told to stop
CLOSE_GRACE = 3.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``; SettingError saying why it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise SettingError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def first_token(db: Database, say: Callable[[str], None]) -> None:
    """With no token at all, make an admin token named ``admin`` and say it (once)."""
    if service.any_token(db):
        return
    try:
        _, token = service.create_token(db, "admin", "admin")
    except AlreadyExistsError:  # another server made it first
        return
    say(f"no API token existed: created token 'admin' (role admin). It is shown this once:\n\n    {token}\n\n"
        f"Send it as 'Authorization: Bearer {token[:6]}...'; make tokens for people and services with"
        " `pipeline-engine token create NAME --role viewer|operator|editor|admin`.")


def _access_logging() -> None:
    access = logging.getLogger("pipeline_engine.access")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False


def serve(db: Database, *, host: str, port: int, body_limit: int, logs: str | None,
          worker=None, public_metrics: bool = False, say: Callable[[str], None]) -> int:
    """Serve the API (and run ``worker``, a ``Worker``, beside it) until stopped. Returns the
    exit status: 0 after a stop, 1 when the worker failed."""
    sock = bind(host, port)
    first_token(db, say)
    app = create_app(db, body_limit=body_limit, logs=logs, worker=worker, public_metrics=public_metrics)
    config = uvicorn.Config(app, access_log=False, log_level="warning", timeout_graceful_shutdown=CLOSE_GRACE,
                            lifespan="off", proxy_headers=False, server_header=False)
    server = uvicorn.Server(config)
    _access_logging()
    failed: list[BaseException] = []
    thread = None
    # uvicorn takes SIGTERM and Ctrl-C while it serves, and raises them again once it has
    # stopped: then they reach the worker (which stops by its rules), or nothing
    if worker is not None:
        worker.install_signal_handlers()
    else:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: None)
    if worker is not None:

        def work() -> None:
            try:
                worker.serve()
            except BaseException as exc:  # the server must not go on without the worker it announced
                failed.append(exc)
                log.error("the worker stopped: %s", exc, exc_info=exc)
                server.should_exit = True

        thread = threading.Thread(target=work, name="worker", daemon=True)
        thread.start()
    shown = f"[{host}]" if ":" in host else host
    say(f"serving http://{shown}:{sock.getsockname()[1]}/api/v1 (docs at /api/docs)"
        + (f"; worker {worker.name}: concurrency {worker.concurrency}" if worker is not None else "; no worker"))
    say(f"web UI: log in at http://{shown}:{sock.getsockname()[1]}/login with a token")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if thread is not None:
            worker.stop()
            while thread.is_alive():
                thread.join(0.2)
    return 1 if failed else 0

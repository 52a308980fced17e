"""One typed settings table. The environment is read here and nowhere else."""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, fields

from pipeline_engine.errors import SettingError

ENV_PREFIX = "PIPELINE_ENGINE_"


def default_db_url() -> str:
    """The embedded default: an SQLite file under ``$XDG_DATA_HOME/pipeline_engine/``
    (``~/.local/share/pipeline_engine/pipeline_engine.db`` when XDG_DATA_HOME is unset)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return "sqlite:///" + os.path.join(base, "pipeline_engine", "pipeline_engine.db")


def default_log_dir() -> str:
    """Where ``run`` writes each vertex's full output: ``$XDG_STATE_HOME/pipeline_engine/logs``
    (``~/.local/state/pipeline_engine/logs`` when XDG_STATE_HOME is unset)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "pipeline_engine", "logs")


#: seconds a worker's heartbeat holds its tracks: others take them back once it has run out
DEFAULT_LEASE = 30.0
#: seconds running vertices may finish after a stop (Ctrl-C, SIGTERM) before they are ended
DEFAULT_GRACE = 30.0
#: seconds between a worker's looks for new work when it has nothing queued
DEFAULT_POLL = 0.2
#: threads running tracks at once in one worker (``run --workers``, ``worker --concurrency``)
DEFAULT_CONCURRENCY = 4

#: the port ``serve`` listens on
DEFAULT_PORT = 8080
#: bytes a request's body may have (the API answers 413 beyond, before it parses anything)
DEFAULT_BODY_LIMIT = 10 * 1024 * 1024

#: the numeric settings: their least values (what the CLI's options accept too)
_LEAST = {"lease": 0.5, "grace": 0.0, "poll": 0.01, "concurrency": 1, "port": 0, "body_limit": 1,
          "schedule_grace": 0.0}
#: the ones that are whole numbers, and their greatest values
_WHOLE = {"concurrency": None, "port": 65535, "body_limit": None}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Every setting, each from ``PIPELINE_ENGINE_<NAME>`` (the CLI's options override them for
    one command)."""

    #: any SQLAlchemy URL; env PIPELINE_ENGINE_DB
    db: str = ""
    #: directory of the full-output log files; env PIPELINE_ENGINE_LOGS
    logs: str = ""
    #: the name this machine's workers register under (default: its host name); env
    #: PIPELINE_ENGINE_HOST. Set it where host names are not unique (containers).
    host: str = ""
    #: env PIPELINE_ENGINE_LEASE (``worker --lease``)
    lease: float = DEFAULT_LEASE
    #: env PIPELINE_ENGINE_GRACE (``--grace``)
    grace: float = DEFAULT_GRACE
    #: env PIPELINE_ENGINE_POLL (``worker --poll``)
    poll: float = DEFAULT_POLL
    #: env PIPELINE_ENGINE_CONCURRENCY (``worker --concurrency``, ``run --workers``)
    concurrency: int = DEFAULT_CONCURRENCY
    #: the address ``serve`` listens on; env PIPELINE_ENGINE_BIND (``serve --host``)
    bind: str = "127.0.0.1"
    #: env PIPELINE_ENGINE_PORT (``serve --port``)
    port: int = DEFAULT_PORT  # 0: any free port
    #: bytes a request's body may have; env PIPELINE_ENGINE_BODY_LIMIT
    body_limit: int = DEFAULT_BODY_LIMIT
    #: ``/metrics`` answers without a token; env PIPELINE_ENGINE_PUBLIC_METRICS (``serve --public-metrics``)
    public_metrics: bool = False
    #: seconds after a fire time within which a scheduler still runs it (later, it is late: the
    #: catch-up policy decides); env PIPELINE_ENGINE_SCHEDULE_GRACE (``scheduler --late-after``)
    schedule_grace: float = 60.0

    @classmethod
    def from_env(cls, environ=None) -> Settings:
        """The settings the environment gives; SettingError naming the variable for a bad value."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = environ.get(var)
            if raw in (None, ""):
                continue
            if f.name in _LEAST:
                values[f.name] = _number(var, raw, int if f.name in _WHOLE else float, _LEAST[f.name],
                                         _WHOLE.get(f.name))
            elif f.name == "public_metrics":
                word = raw.strip().lower()
                if word not in _TRUE + _FALSE:
                    raise SettingError(f"{var} must be one of {', '.join(_TRUE + _FALSE)}, got {raw!r}")
                values[f.name] = word in _TRUE
            else:
                values[f.name] = raw
        values.setdefault("db", default_db_url())
        values.setdefault("logs", default_log_dir())
        values.setdefault("host", socket.gethostname())
        return cls(**values)  # type: ignore[arg-type]


def _number(var: str, raw: str, kind: type, least: float, most: int | None = None) -> float | int:
    what = "a whole number" if kind is int else "a number of seconds"
    bounds = f">= {least:g}" if most is None else f"from {least:g} to {most}"
    try:
        value = kind(raw.strip())
    except ValueError:
        raise SettingError(f"{var} must be {what} {bounds}, got {raw!r}") from None
    if not (math.isfinite(value) and value >= least and (most is None or value <= most)):
        raise SettingError(f"{var} must be {what} {bounds}, got {raw!r}")
    return value


def this_host() -> str:
    """The host name workers of this machine register under (see ``Settings.host``)."""
    return Settings.from_env().host


def process_environ() -> dict[bytes, bytes]:
    """The environment a vertex's process inherits: this process's minus the engine's settings
    (every ``PIPELINE_ENGINE_*`` variable: ``PIPELINE_ENGINE_DB`` carries the database password).
    The engine adds the process's inputs and its marker itself."""
    prefix = ENV_PREFIX.encode()
    return {k: v for k, v in os.environb.items() if not k.startswith(prefix)}


#: ``PIPELINE_ENGINE_PARAM_<NAME>``: a run input from the environment (``cli`` reads them)
PARAM_PREFIX = ENV_PREFIX + "PARAM_"


def param_environ(environ=None) -> dict[str, str]:
    """The run inputs set in the environment: NAME -> value for every ``PIPELINE_ENGINE_PARAM_NAME``
    (the name as written: case matters). A vertex never inherits them (``process_environ``)."""
    environ = os.environ if environ is None else environ
    return {k[len(PARAM_PREFIX):]: v for k, v in environ.items() if k.startswith(PARAM_PREFIX) and k != PARAM_PREFIX}

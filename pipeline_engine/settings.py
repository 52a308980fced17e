"""One typed settings table. The environment is read here and nowhere else."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields

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


@dataclass(frozen=True)
class Settings:
    #: any SQLAlchemy URL; env PIPELINE_ENGINE_DB
    db: str = ""
    #: directory of the full-output log files; env PIPELINE_ENGINE_LOGS
    logs: str = ""
    #: the name this machine's workers register under (default: its host name); env
    #: PIPELINE_ENGINE_HOST. Set it where host names are not unique (containers).
    host: str = ""

    @classmethod
    def from_env(cls, environ=None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw not in (None, ""):
                values[f.name] = raw
        values.setdefault("db", default_db_url())
        values.setdefault("logs", default_log_dir())
        values.setdefault("host", socket.gethostname())
        return cls(**values)


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

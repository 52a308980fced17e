"""One typed settings table. The environment is read here and nowhere else."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

ENV_PREFIX = "PIPELINE_ENGINE_"


def default_db_url() -> str:
    """The embedded default: an SQLite file under ``$XDG_DATA_HOME/pipeline_engine/``
    (``~/.local/share/pipeline_engine/pipeline_engine.db`` when XDG_DATA_HOME is unset)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return "sqlite:///" + os.path.join(base, "pipeline_engine", "pipeline_engine.db")


@dataclass(frozen=True)
class Settings:
    #: any SQLAlchemy URL; env PIPELINE_ENGINE_DB
    db: str = ""

    @classmethod
    def from_env(cls, environ=None) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw not in (None, ""):
                values[f.name] = raw
        settings = cls(**values)
        if not settings.db:
            settings = cls(**{**values, "db": default_db_url()})
        return settings

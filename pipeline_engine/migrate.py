"""Alembic glue: the migrations ship inside the package, under ``migrations/``."""
from __future__ import annotations

import io
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

#: our own version table, so a database shared with another Alembic project is not confused
VERSION_TABLE = "pipeline_engine_version"


def config(connection: Connection | None = None, url: str | None = None,
           output: io.StringIO | None = None) -> Config:
    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", "pipeline_engine:migrations")
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(conn: Connection, target: str = "head") -> None:
    """Apply migrations on ``conn`` inside its current transaction."""
    command.upgrade(config(connection=conn), target)


def offline_sql(url: str) -> str:
    """The DDL of every migration for the dialect of ``url`` (nothing is connected)."""
    out = io.StringIO()
    command.upgrade(config(url=url, output=out), "head", sql=True)
    return out.getvalue()

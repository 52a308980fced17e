"""Where the full output of attempts goes: the one place the log files' layout is defined.
Paths only (no database, no processes), and the removal of deleted runs' directories.

    <logs>/<database key>/run-<id>/<vertex>.log

``<logs>`` is the ``logs`` setting (``$PIPELINE_ENGINE_LOGS``); the database key keeps apart
databases whose run ids repeat (``Database.key``: its installation id); a track's attempts go
into one file, each after a ``--- attempt N ---`` line, the first one emptying it."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable


def database_dir(logs: str, db_key: str) -> str:
    """The directory of one database's runs."""
    return os.path.join(logs, db_key)


def run_dir(database_logs: str, run_id: int) -> str:
    """The directory of one run's log files (removed with the run)."""
    return os.path.join(database_logs, f"run-{run_id}")


def log_path(database_logs: str, run_id: int, vertex: str) -> str:
    """The file a track's output goes to."""
    return os.path.join(run_dir(database_logs, run_id), f"{vertex}.log")


def remove_runs(logs: str, db_key: str, run_ids: Iterable[int]) -> None:
    """Remove the log files of deleted runs on this machine (``graph delete --with-runs``,
    ``prune``, the API's delete): a missing directory is no error."""
    database_logs = database_dir(logs, db_key)
    for run_id in run_ids:
        shutil.rmtree(run_dir(database_logs, run_id), ignore_errors=True)


def find(logs: str, db_key: str, run_id: int, vertex: str, recorded: str | None, finished: bool) -> str | None:
    """A track's log file on this machine, if there is one: the path its last ended attempt
    recorded, or, while it runs, where this machine's runs put it."""
    paths = [recorded]
    if not finished:
        paths.append(log_path(database_dir(logs, db_key), run_id, vertex))
    return next((p for p in paths if p and os.path.isfile(p)), None)

"""One settings table: every setting from PIPELINE_ENGINE_<NAME>, typed and checked, the CLI's
defaults read from it, its options over it for one command."""
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, stop, wait_for, worker

from pipeline_engine.errors import SettingError
from pipeline_engine.settings import DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_LEASE, DEFAULT_POLL, Settings


def test_the_numeric_settings_come_typed_from_the_environment():
    s = Settings.from_env({"PIPELINE_ENGINE_LEASE": "5", "PIPELINE_ENGINE_GRACE": "0",
                           "PIPELINE_ENGINE_POLL": "0.05", "PIPELINE_ENGINE_CONCURRENCY": " 2 "})
    assert (s.lease, s.grace, s.poll, s.concurrency) == (5.0, 0.0, 0.05, 2)
    s = Settings.from_env({})
    assert (s.lease, s.grace, s.poll, s.concurrency) == (DEFAULT_LEASE, DEFAULT_GRACE, DEFAULT_POLL,
                                                         DEFAULT_CONCURRENCY)


@pytest.mark.parametrize("var, raw, why", [
    ("PIPELINE_ENGINE_LEASE", "soon", "a number of seconds >= 0.5"),
    ("PIPELINE_ENGINE_LEASE", "0.1", "a number of seconds >= 0.5"),
    ("PIPELINE_ENGINE_POLL", "nan", "a number of seconds >= 0.01"),
    ("PIPELINE_ENGINE_GRACE", "inf", "a number of seconds >= 0"),
    ("PIPELINE_ENGINE_CONCURRENCY", "2.5", "a whole number >= 1"),
    ("PIPELINE_ENGINE_CONCURRENCY", "0", "a whole number >= 1"),
])
def test_a_bad_setting_names_its_variable(var, raw, why):
    with pytest.raises(SettingError, match=f"{var} must be {why}, got '{raw}'"):
        Settings.from_env({var: raw})


def _pe(db_url, *args, env=None):
    return subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_the_worker_reads_its_defaults_from_the_settings_and_its_options_win(db, db_url, tmp_path):
    env = {"PIPELINE_ENGINE_CONCURRENCY": "3", "PIPELINE_ENGINE_LEASE": "7"}
    procs = [worker(db_url, open(tmp_path / "a.log", "w"), "--name", "from-env", env=env),
             worker(db_url, open(tmp_path / "b.log", "w"), "--name", "from-option", "--concurrency", "2", env=env)]
    try:
        def registered():
            listed = json.loads(_pe(db_url, "workers", "--json").stdout or "[]")
            return {w["name"]: (w["concurrency"], w["lease"]) for w in listed} if len(listed) == 2 else None
        assert wait_for(registered, 20, "both workers to register") == {"from-env": (3, 7.0),
                                                                        "from-option": (2, 7.0)}
    finally:
        stop(*procs)
    bad = _pe(db_url, "worker", env={"PIPELINE_ENGINE_LEASE": "soon"})
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "pipeline-engine: error: PIPELINE_ENGINE_LEASE must be a number of seconds >= 0.5, got 'soon'")
    helped = _pe(db_url, "worker", "--help", env={"PIPELINE_ENGINE_LEASE": "soon"})
    assert helped.returncode == 0 and "$PIPELINE_ENGINE_LEASE" in helped.stdout

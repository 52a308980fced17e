"""Schemathesis against a real `pipeline-engine serve`, driven by its OpenAPI document: every
check it has (no server error, status codes, content types, headers and bodies as documented,
bad data refused, good data accepted, authentication not ignored...) on every call, from its
examples, coverage, fuzzing and stateful phases, with a fixed seed. What it is told to leave out
and why is in tests/schemathesis.toml and below."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, Server

from pipeline_engine import service
from pipeline_engine.db import Database

CONFIG = os.path.join(ROOT, "tests", "schemathesis.toml")
#: left to tests/test_api.py: revoking a token (the fuzzer would revoke its own), a followed log
#: and the event stream (they stream until their track or run ends, which no worker here makes happen)
EXCLUDED = ["/api/v1/tokens/{name}", "/api/v1/runs/{run_id}/tracks/{vertex}/log", "/api/v1/events"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_schemathesis_finds_nothing(db_url, tmp_path):
    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, os.path.join(ROOT, "examples", "diamond.yaml"), seal=True)
    db.dispose()
    server = Server(db_url, tmp_path / "serve.log", "--no-worker")
    try:
        exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
        done = subprocess.run(
            [exe, "--config-file", CONFIG, "run", server.url + "/api/v1/openapi.json",
             "-H", f"Authorization: Bearer {server.first_token}", "--max-examples", "20", "--seed", "1",
             "--workers", "1", "--generation-with-security-parameters", "false", "--request-timeout", "20",
             *[a for path in EXCLUDED for a in ("--exclude-path", path)]],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        summary = done.stdout[done.stdout.find("SUMMARY"):]
        assert done.returncode == 0, done.stdout[-6000:]
        assert "Authentication failed" not in done.stdout, summary  # it did get past the token check
    finally:
        server.stop()
    log = server.text()
    assert "Traceback" not in log
    statuses = {json.loads(line)["status"] for line in log.splitlines() if line.startswith("{")}
    assert 500 not in statuses and {200, 201, 404, 422} <= statuses, statuses

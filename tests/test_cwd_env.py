"""Where a script runs (issue 11, item 13): a vertex's ``cwd`` (absolute, or relative to the
worker's working directory) and ``env`` (literal values, added to the environment it inherits).
Real processes, every backend."""
from __future__ import annotations

import os
import re

import pytest
from conftest import run_tracks

from pipeline_engine import graphfile, service
from pipeline_engine.errors import GraphError, GraphFileError
from pipeline_engine.runner import run_pipeline

LITERAL = "a b $HOME `id` $(id) {x} ' \" \\ *"


def _run(db, graph: dict) -> tuple[str, dict]:
    service.import_graph(db, graph, seal=True)
    run = service.start_run(db, graph["name"])
    return run_pipeline(db, run, workers=2), run_tracks(db, run.id)


def test_a_script_runs_in_its_cwd_with_its_env(db, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work)  # the worker's working directory: what a relative cwd starts from
    script = 'pwd -P > here; printf %s "$GREETING" > greeting; printf %s "$PATH" > path'
    state, tracks = _run(db, {"name": "where", "vertices": [
        {"name": "abs", "script": script, "cwd": str(tmp_path), "env": {"GREETING": LITERAL, "PATH": "/usr/bin:/bin"}},
        {"name": "rel", "script": "pwd -P > here", "cwd": "sub"},
        {"name": "default", "script": 'pwd -P > default; printf %s "${GREETING-unset}" > default-env'}]})
    assert state == "succeeded", {v: t.error for v, t in tracks.items()}
    assert (tmp_path / "here").read_text().strip() == os.path.realpath(tmp_path)
    assert (tmp_path / "greeting").read_text() == LITERAL  # literal: nothing expanded or substituted
    assert (tmp_path / "path").read_text() == "/usr/bin:/bin"
    assert (work / "sub" / "here").read_text().strip() == os.path.realpath(work / "sub")
    assert (work / "default").read_text().strip() == os.path.realpath(work)
    assert (work / "default-env").read_text() == "unset"  # one vertex's env is its own


def test_a_cwd_that_does_not_exist_fails_the_attempt_with_a_clear_error(db, tmp_path):
    gone = str(tmp_path / "gone")
    state, tracks = _run(db, {"name": "nowhere", "vertices": [
        {"name": "a", "script": "true", "cwd": gone, "retries": 1},
        {"name": "b", "script": "true"}]})
    assert state == "failed"
    a = tracks["a"]
    assert (a.state, a.attempt, a.exit_code) == ("failed", 2, None)
    assert a.error == f"cannot run in the working directory {gone}: No such file or directory"
    assert tracks["b"].state == "succeeded"  # the engine went on


def test_cwd_and_env_in_files_the_api_and_show(db, cli):
    graph = {"name": "g", "vertices": [{"name": "a", "script": "true", "cwd": "/srv/data",
                                        "env": {"MODE": "fast", "N": "3"}}, {"name": "b", "script": "true"}]}
    service.import_graph(db, graph)
    text = service.export_graph(db, "g")
    assert "cwd: /srv/data\n" in text and "env:\n    MODE: fast\n    N: '3'\n" in text
    assert graphfile.loads(text) == service.show_graph(db, "g").spec
    assert graphfile.loads(service.export_graph(db, "g", "json")) == service.show_graph(db, "g").spec
    vertices = service.show_graph(db, "g").to_dict()["vertices"]
    assert [(v["cwd"], v["env"]) for v in vertices] == [("/srv/data", {"MODE": "fast", "N": "3"}), (None, {})]
    code, out, _ = cli("graph", "show", "g")
    assert code == 0 and "a  (cwd /srv/data)" in out and "env MODE=fast" in out
    assert service.update_vertex(db, "g", "a", retries=1).env == {"MODE": "fast", "N": "3"}  # kept
    assert service.update_vertex(db, "g", "a", cwd=None, env={}).cwd is None
    assert service.show_graph(db, "g").spec.vertices[0].env == {}
    assert service.add_vertex(db, "g", "c", "true", cwd="rel/dir", env={"X": ""}).env == {"X": ""}


def test_a_yaml_env_value_is_the_text_written():
    spec = graphfile.loads("name: g\nvertices:\n  - name: a\n    script: 'true'\n"
                           "    env: {N: 0x1F, B: true, F: 1.50, Z: 0755}\n")
    assert spec.vertices[0].env == {"N": "0x1F", "B": "true", "F": "1.50", "Z": "0755"}


@pytest.mark.parametrize("env, problem", [
    ({"BASH_ENV": "/tmp/x"}, "env: BASH_ENV cannot be set: bash treats it specially"),
    ({"LD_PRELOAD": "x.so"}, "env: LD_PRELOAD cannot be set"),
    ({"SHELLOPTS": "xtrace"}, "env: SHELLOPTS cannot be set"),
    ({"IFS": ","}, "env: IFS cannot be set"),
    ({"PS4": "$(id)"}, "env: PS4 cannot be set"),
    ({"ENV": "x"}, "env: ENV cannot be set"),
    ({"PIPELINE_ENGINE_TRACK": "x"}, "env: PIPELINE_ENGINE_TRACK is reserved"),
    ({"PE_ip": "x"}, "env: PE_ip is reserved"),
    ({"1X": "x"}, "env: '1X' is not a valid variable name"),
    ({"A-B": "x"}, "env: 'A-B' is not a valid variable name"),
    ({"N": 3}, "env: N must be a string, got 3 (quote it)"),
    ({"N": None}, "env: N must be a string"),
    ({"N": "a\x00b"}, "env: N contains a NUL character"),
    (["A=b"], "env must be a mapping of variable names to strings"),
])
def test_bad_env_is_refused_naming_the_vertex_and_the_variable(env, problem):
    with pytest.raises(GraphFileError) as exc:
        graphfile.graph_from_dict({"name": "g", "vertices": [{"name": "v", "script": "true", "env": env}]})
    assert f"vertex 'v': {problem}" in str(exc.value)


@pytest.mark.parametrize("cwd, problem", [
    ("", "cwd must be a non-empty string (a directory), got ''"),
    (3, "cwd must be a non-empty string (a directory), got 3"),
    ("~/data", "cwd '~/data': '~' is not expanded; give an absolute path"),
    ("/a\x00b", "cwd contains a NUL character"),
    ("/" + "d" * 1024, "cwd is 1025 characters long, over the 1024 the database keeps"),
])
def test_a_bad_cwd_is_refused_naming_the_vertex(cwd, problem):
    with pytest.raises(GraphFileError, match=f"^vertex 'v': {re.escape(problem)}"):
        graphfile.graph_from_dict({"name": "g", "vertices": [{"name": "v", "script": "true", "cwd": cwd}]})


def test_bad_cwd_and_env_through_the_cli_and_the_api(db, cli, tmp_path, unchanged):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvertices:\n  - name: v\n    script: 'true'\n    cwd: ''\n"
                   "    env: {BASH_ENV: /tmp/evil, OK: fine}\n")
    service.create_graph(db, "api")
    with unchanged():
        code, out, err = cli("graph", "import", str(bad))
        assert code == 2 and out == "" and "Traceback" not in err
        assert [line.split(": error: ", 1)[1] for line in err.splitlines()] == [
            f"{bad}: vertex 'v': cwd must be a non-empty string (a directory), got ''",
            "vertex 'v': env: BASH_ENV cannot be set: bash treats it specially (it changes what bash runs or how it"
            " reads the script)"]
        with pytest.raises(GraphError, match="vertex 'v': env: LD_LIBRARY_PATH cannot be set"):
            service.add_vertex(db, "api", "v", "true", env={"LD_LIBRARY_PATH": "/x"})
        with pytest.raises(GraphError, match="vertex 'v': env X is not valid UTF-8 text"):
            service.add_vertex(db, "api", "v", "true", env={"X": "\udcff"})


def test_an_attempts_processes_learn_their_run_graph_vertex_attempt_and_fire_time(db, tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from pipeline_engine import schedules
    from pipeline_engine.runner import Worker

    monkeypatch.setenv("PIPELINE_ENGINE_FIRE_AT", "leaked")  # the worker's own settings never reach a script
    said = tmp_path / "said"
    script = (f'echo "$PIPELINE_ENGINE_RUN_ID $PIPELINE_ENGINE_GRAPH $PIPELINE_ENGINE_VERTEX $PIPELINE_ENGINE_ATTEMPT'
              f' [$PIPELINE_ENGINE_FIRE_AT]" >> {said}; test -f {tmp_path}/again || {{ touch {tmp_path}/again; exit 1; }}')
    state, _ = _run(db, {"name": "who-am-i", "vertices": [{"name": "me", "script": script, "retries": 1}]})
    run = service.list_runs(db)[0].id
    assert state == "succeeded"
    assert said.read_text().splitlines() == [f"{run} who-am-i me 1 []", f"{run} who-am-i me 2 []"]
    # a scheduled run's attempts also learn the fire time it was made for
    said.unlink()
    fire = datetime(2026, 6, 1, 2, 30, tzinfo=timezone.utc)
    service.add_schedule(db, schedules.spec_from("nightly", "who-am-i", cron="30 2 * * *", start=fire))
    (decision,) = service.decide_due(db, scheduler="t", now=fire)
    worker = Worker(db, concurrency=1)
    worker.adopt(service.load_run(db, decision.run))
    assert worker.run(decision.run) == "succeeded"
    assert said.read_text().splitlines() == [f"{decision.run} who-am-i me 1 [2026-06-01T02:30:00Z]"]

"""The command line around the edges (issue 11): a graph file from standard input, YAML syntax
errors with their line and column, the demo cleaning up after itself and printing no escape codes
into a pipe, and `--help` / `--version` starting without the database libraries. Each test failed
before its fix."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

from pipeline_engine import service


def _pe(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_engine", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


# --- YAML syntax errors keep their place -------------------------------------------------------

def test_a_yaml_syntax_error_names_the_file_line_and_column_on_one_line(cli, tmp_path, unchanged):
    # the message was PyYAML's five lines run together, the place buried in `"<unicode string>", line 4`
    path = tmp_path / "bad.yaml"
    path.write_text("name: g\nvertices:\n  - name: a\n   script: x\n")
    with unchanged():
        code, out, err = cli("graph", "import", str(path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"pipeline-engine: error: {path}: line 4, column 4: not valid YAML: expected <block end>")
    assert "<unicode string>" not in err
    path.write_text("name: g\n\tvertices: []\n")
    code, _, err = cli("graph", "import", str(path))
    assert code == 2 and f"{path}: line 2, column 1: not valid YAML: found character '\\t'" in err


# --- a graph file from standard input -----------------------------------------------------------

def test_graph_import_dash_reads_yaml_or_json_from_standard_input(db, db_url):
    # `-` was taken as a file name: "cannot read graph file -: No such file or directory"
    yaml_text = "name: piped\nvertices:\n  - {name: a, script: echo a}\n  - {name: b, script: echo b}\nedges: [[a, b]]\n"
    result = _pe("--db", db_url, "graph", "import", "-", stdin=yaml_text)
    assert (result.returncode, result.stdout) == (0, "graph 'piped' version 1 imported: 2 vertices, 1 edge, draft\n"), \
        result.stderr
    json_text = '{"name": "piped-json", "vertices": [{"name": "a", "script": "echo a"}]}'
    result = _pe("--db", db_url, "graph", "import", "--check", "-", stdin=json_text)
    assert (result.returncode, result.stdout) == (0, "graph 'piped-json' version 1 imported: 1 vertex, 0 edges, checked\n")
    flow = "{name: piped-flow, vertices: [{name: a, script: echo a}]}"  # YAML that looks like JSON
    result = _pe("--db", db_url, "graph", "import", "--seal", "--name", "renamed", "-", stdin=flow)
    assert (result.returncode, result.stdout) == (0, "graph 'renamed' version 1 imported: 1 vertex, 0 edges, sealed\n")
    result = _pe("--db", db_url, "graph", "import", "-", stdin="name: g\nvertices:\n  - name: a\n   script: x\n")
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("pipeline-engine: error: <stdin>: line 4, column 4: not valid YAML")
    result = _pe("--db", db_url, "graph", "import", "-", stdin='{"name": "g", "vertices": [')
    assert result.returncode == 2 and "<stdin>: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    assert [g.name for g in service.list_graphs(db)] == ["piped", "piped-json", "renamed"]


def test_graph_import_dash_on_a_terminal_says_it_reads_standard_input(db_url):
    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "pipeline_engine", "--db", db_url, "graph", "import", "-"], cwd=ROOT,
                          encoding="utf-8", timeout=20)
    try:
        child.expect_exact("reading the graph file from standard input (end it with Ctrl-D)")
        child.send("name: typed\nvertices:\n  - {name: a, script: echo a}\n")
        child.sendeof()
        child.expect_exact("graph 'typed' version 1 imported: 1 vertex, 0 edges, draft")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


# --- the demo -------------------------------------------------------------------------------------

def _demo(tmp_path, *args: str) -> subprocess.CompletedProcess:
    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_ENGINE_")}
    env.update(TMPDIR=str(temp), HOME=str(home), TERM="xterm-256color",
               PE=os.path.join(os.path.dirname(sys.executable), "pipeline-engine"))
    return subprocess.run([os.path.join(ROOT, "scripts", "demo"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_demo_into_a_pipe_prints_no_escape_codes_and_leaves_nothing_behind(tmp_path):
    # it printed \033[1m into pipes, and left its database in /tmp, its logs in ~/.local/state and
    # the run's files in /tmp/pipeline-engine-demo
    result = _demo(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout and "\x1b[" not in result.stderr
    assert "$ pipeline-engine run sales-report" in result.stdout and "cycle: " in result.stderr
    assert "run 1 succeeded: 7 succeeded" in result.stdout
    assert os.listdir(tmp_path / "tmp") == [] and os.listdir(tmp_path / "home") == []


def test_the_demo_keeps_its_files_when_asked_and_says_where(tmp_path):
    result = _demo(tmp_path, "--keep")
    assert result.returncode == 0, result.stderr
    [kept] = os.listdir(tmp_path / "tmp")
    where = os.path.join(tmp_path, "tmp", kept)
    assert result.stdout.splitlines()[-1] == f"kept in {where}: demo.db (the database), logs/ (the log files)," \
                                             " work/ (the files the run wrote)"
    assert {"demo.db", "logs", "work"} <= set(os.listdir(where))
    assert os.listdir(tmp_path / "home") == []


def test_run_progress_into_a_pipe_prints_no_escape_codes(db, db_url):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "echo a"},
                                                        {"name": "b", "script": "sleep 0.5; exit 1"}]}, seal=True)
    result = _pe("--db", db_url, "run", "g", env={**os.environ, "TERM": "xterm-256color"})
    assert result.returncode == 1
    assert "\x1b[" not in result.stdout and "\x1b[" not in result.stderr
    assert "  a: succeeded" in result.stderr and "  b: failed" in result.stderr


# --- a fast start ---------------------------------------------------------------------------------

_HEAVY = ("sqlalchemy", "alembic", "yaml", "pymysql", "psycopg", "pipeline_engine.service", "pipeline_engine.db",
          "pipeline_engine.runner", "pipeline_engine.graphfile")


def test_help_and_version_import_no_database_library_nor_the_engine():
    # `--version` imported SQLAlchemy, the models, the engine and YAML: about a second on this machine
    for args in (["--version"], ["--help"], ["graph", "--help"], ["logs", "--help"]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline_engine", *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
        assert not {m for m in imported if m.split(".")[0] in _HEAVY or m in _HEAVY}, (args, sorted(imported))
    assert "pipeline-engine, version" in subprocess.run([sys.executable, "-m", "pipeline_engine", "--version"],
                                                        cwd=ROOT, capture_output=True, text=True).stdout


def test_the_formats_the_cli_offers_are_the_graph_files():
    from pipeline_engine import cli, graphfile

    assert cli.FORMATS == graphfile.FORMATS
    from pipeline_engine import Database, connect  # still there, imported when asked for
    assert callable(Database) and callable(connect)

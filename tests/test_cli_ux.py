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
    assert (result.returncode, result.stdout) == (0, "graph 'piped' imported: 2 vertices, 1 edge, draft\n"), \
        result.stderr
    json_text = '{"name": "piped-json", "vertices": [{"name": "a", "script": "echo a"}]}'
    result = _pe("--db", db_url, "graph", "import", "--check", "-", stdin=json_text)
    assert (result.returncode, result.stdout) == (0, "graph 'piped-json' imported: 1 vertex, 0 edges, checked\n")
    flow = "{name: piped-flow, vertices: [{name: a, script: echo a}]}"  # YAML that looks like JSON
    result = _pe("--db", db_url, "graph", "import", "--seal", "--name", "renamed", "-", stdin=flow)
    assert (result.returncode, result.stdout) == (0, "graph 'renamed' imported: 1 vertex, 0 edges, sealed\n")
    result = _pe("--db", db_url, "graph", "import", "-", stdin="name: g\nvertices:\n  - name: a\n   script: x\n")
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("pipeline-engine: error: <stdin>: line 4, column 4: not valid YAML")
    result = _pe("--db", db_url, "graph", "import", "-", stdin='{"name": "g", "vertices": [')
    assert result.returncode == 2 and "<stdin>: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    assert [g.name for g in service.list_graphs(db)] == ["piped", "piped-json", "renamed"]

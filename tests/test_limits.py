"""Limits checked where data enters (issue 10, items 6, 7 and 12): hostile graph files and
command lines are one-line errors; a name secret in one vertex only is refused at check; values,
defaults and scripts beyond the kernel's argument limit, and rows beyond MariaDB's packet limit,
are refused at save or start with nothing written."""
import resource
import subprocess
import sys

import pytest
from sqlalchemy import text

from pipeline_engine import limits, service, store
from pipeline_engine.errors import GraphError, ParameterError
from pipeline_engine.runner import run_pipeline
from pipeline_engine.spec import GraphSpec, make_vertex

from conftest import ROOT, snapshot

BOMB = "name: bomb\nvertices:\n  - name: a\n    script: echo\n    timeout:\n" \
       "      - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" \
       + "".join(f"      - &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def one_line_error(code, err, expected):
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and expected in err, err


# --- hostile graph files and command lines, through the CLI ----------------------------------------

@pytest.mark.parametrize("content, expected", [
    ("name: g\nvertices: " + "[" * 100000, "nested more than 32 levels deep"),
    ('{"name": "g", "vertices": ' + "[" * 100000, "nested more than 32 levels deep"),
    ("name: g\nvertices:\n  - {name: a, script: echo, retries: 1" + "0" * 5000 + "}\n", "a number of more than 100"),
    ("name: g\nvertices:\n  - {name: a, script: 'echo {n}', inputs: {n: {type: int, min: 1e400}}}\n",
     "min must be a number"),
    ("name: g\nvertices:\n  - {name: a, script: 'echo {n}', inputs: {n: {type: str, pattern: '" + "(" * 5000 + "'}}}\n",
     "nested too deeply to compile"),
])
def test_hostile_graph_files_are_one_line_errors(cli, db, tmp_path, content, expected):
    path = tmp_path / "g.yaml"
    path.write_text(content)
    before = snapshot(db)
    code, _, err = cli("graph", "import", str(path))
    one_line_error(code, err, expected)
    assert snapshot(db) == before


def test_an_alias_bomb_is_refused_without_growing_memory(db_url, db, tmp_path):
    # Given a nine-level "billion laughs" in timeout:, and a process allowed 1 GiB of memory
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    before = snapshot(db)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    # When it is imported
    proc = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "graph", "import", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=cap)
    # Then it is refused at once, in one line, and nothing is written
    one_line_error(proc.returncode, proc.stderr, "line 6: anchors and aliases (&name, *name) are not allowed")
    assert snapshot(db) == before


def test_a_graph_file_over_the_size_limit_is_refused(cli, db, tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b'{"name": "g", "vertices": [' + b" " * (16 * 1024 * 1024) + b"]}")
    before = snapshot(db)
    code, _, err = cli("graph", "import", str(path))
    one_line_error(code, err, "over the limit of 16777216 bytes (16 MiB) for a graph file")
    assert snapshot(db) == before


def test_arguments_that_are_not_utf8_are_one_line_errors(cli, db, tmp_path, example):
    # (the cli fixture puts --db URL first: arguments 1 and 2)
    cli("graph", "import", example("sales-report.yaml"), "--seal")
    path = tmp_path / "g\udcff.yaml"  # how Python hands over a file name with the byte 0xff
    path.write_text("name: g2\nvertices:\n  - {name: a, script: echo}\n")
    before = snapshot(db)
    for args, expected in [(("run", "sales-report", "--no-input", "-p", "region=\udcff"),
                            "command-line argument 7 ('region=...') is not valid UTF-8 text"),
                           (("graph", "show", "s\udcff"), "command-line argument 5 is not valid UTF-8"),
                           (("graph", "import", str(path)), "command-line argument 5 is not valid UTF-8"),
                           (("graph", "import", example("diamond.yaml"), "--name", "d\udcff"),
                            "argument 7 is not valid UTF-8")]:
        code, _, err = cli(*args)
        one_line_error(code, err, expected)
    assert snapshot(db) == before


def test_a_secret_given_as_bytes_that_are_not_utf8_is_refused_unshown(db, unchanged):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "echo {pw}",
                                                         "inputs": {"pw": "secret"}}]}, seal=True)
    with unchanged(), pytest.raises(ParameterError) as exc:
        service.start_run(db, "g", ["pw=hunter2\udcffxyz"])
    assert "not valid UTF-8" in str(exc.value) and "hunter2" not in str(exc.value)


# --- a name secret in one vertex and not in another -------------------------------------------------

CLASH = {"name": "g", "vertices": [{"name": "a", "script": "echo {token}", "inputs": {"token": "str"}},
                                   {"name": "b", "script": "echo {token}", "inputs": {"token": "secret"}},
                                   {"name": "c", "script": "echo {token}", "inputs": {"token": "secret"}}]}


def test_a_name_secret_in_some_vertices_only_is_refused_at_check_and_seal(db, unchanged):
    service.import_graph(db, CLASH)
    with unchanged():
        with pytest.raises(GraphError) as exc:
            service.check_graph(db, "g")
        with pytest.raises(GraphError):
            service.import_graph(db, CLASH, name="g2", seal=True)
    message = str(exc.value)
    assert message == ("graph 'g': input 'token' is secret in some vertices and not in others (str in vertex 'a';"
                       " secret in vertex 'b', 'c'): its value would be stored and shown in clear for the others;"
                       " declare 'token' secret in every vertex, or give the other input another name")
    assert service.show_graph(db, "g").info.status == "draft"


def test_a_sealed_graph_with_such_a_name_does_not_run(db, unchanged):
    # a graph sealed before the check existed
    service.import_graph(db, CLASH)
    with db.transaction(write=True) as s:
        store.set_status(s, store.get_graph(s, "g"), "sealed")
    with unchanged(), pytest.raises(GraphError, match="input 'token' is secret in some vertices"):
        service.start_run(db, "g", ["token=hunter2"])


def test_cli_check_of_such_a_graph_exits_2_naming_both_vertices(cli, db, tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("name: g\nvertices:\n  - {name: a, script: 'echo {pw}', inputs: {pw: str}}\n"
                    "  - {name: b, script: 'echo {pw}', inputs: {pw: secret}}\n")
    cli("graph", "import", str(path))
    before = snapshot(db)
    code, _, err = cli("graph", "check", "g")
    one_line_error(code, err, "input 'pw' is secret in some vertices and not in others (str in vertex 'a';"
                              " secret in vertex 'b')")
    assert snapshot(db) == before


# --- the kernel's argument limits -------------------------------------------------------------------

def test_a_script_or_default_over_the_argument_limit_is_refused_at_save(db, unchanged):
    service.create_graph(db, "g")
    long_script = "echo " + "x" * limits.MAX_ARG_STRLEN
    with unchanged():
        with pytest.raises(GraphError, match=r"vertex 'a': the script as it runs is 131078 bytes, over the kernel's"
                                             r" limit of 131072 bytes for one argument"):
            service.add_vertex(db, "g", "a", long_script)
        with pytest.raises(GraphError, match=r"vertex 'a': input 'x': the default makes PE_x=\.\.\. 131077 bytes"):
            service.add_vertex(db, "g", "a", "echo {x}", inputs={"x": {"default": "y" * 131071}})
        with pytest.raises(GraphError, match=r"input 'c': the longest choice makes PE_c=\.\.\."):
            service.add_vertex(db, "g", "a", "echo {c}", inputs={"c": {"type": "choice", "choices": ["a", "é" * 70000]}})
    service.add_vertex(db, "g", "a", "echo ok")
    with unchanged(), pytest.raises(GraphError, match="the script as it runs"):
        service.update_vertex(db, "g", "a", script=long_script)
    with unchanged(), pytest.raises(GraphError, match="vertex 'big': the script as it runs"):
        service.import_graph(db, {"name": "h", "vertices": [{"name": "big", "script": long_script}]})


def test_the_script_is_measured_as_it_runs(db):
    # {x} becomes "${PE_x}" (6 characters more): a script that fits as written may not
    service.create_graph(db, "g")
    filler = "#" * (limits.MAX_ARG_STRLEN - 1 - len('echo "${PE_x}"\n'))
    service.add_vertex(db, "g", "fits", "echo {x}\n" + filler, inputs={"x": "str"})
    with pytest.raises(GraphError, match="the script as it runs is 131073 bytes"):
        service.add_vertex(db, "g", "over", "echo {x}\n" + filler + "#", inputs={"x": "str"})


def test_a_value_over_the_argument_limit_is_refused_at_start(db, unchanged, tmp_path):
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "a", "script": "printf %s {x} | wc -c > " + str(tmp_path / "a.out"), "inputs": {"x": "str"}},
        {"name": "b", "script": "echo {pw}", "inputs": {"pw": "secret"}}]}, seal=True)
    fits = "é" * ((limits.MAX_ARG_STRLEN - len("PE_x=") - 1) // 2)  # UTF-8 bytes count, not characters
    with unchanged(), pytest.raises(ParameterError) as exc:
        service.start_run(db, "g", {"x": fits + "é", "pw": "s" * limits.MAX_ARG_STRLEN})
    assert str(exc.value).splitlines() == [
        "vertex 'a': input 'x': the value makes PE_x=... 131074 bytes, over the kernel's limit of 131072 bytes"
        " for one environment variable (MAX_ARG_STRLEN, name and NUL counted)",
        "vertex 'b': input 'pw': the value makes PE_pw=... 131079 bytes, over the kernel's limit of 131072 bytes"
        " for one environment variable (MAX_ARG_STRLEN, name and NUL counted)"]
    # the largest value that fits really runs
    run = service.start_run(db, "g", {"x": fits, "pw": "s"})
    assert run_pipeline(db, run, workers=1) == "succeeded"
    assert int((tmp_path / "a.out").read_text()) == len(fits.encode())


def test_values_over_the_total_budget_are_refused_at_start(db, unchanged):
    inputs = {f"x{i}": "str" for i in range(20)}
    script = "echo " + " ".join(f"{{x{i}}}" for i in range(20))
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": script, "inputs": inputs}]}, seal=True)
    with unchanged(), pytest.raises(ParameterError, match=r"vertex 'a': its script and inputs take 2000\d+ bytes"
                                                          r" together, over the 1835008 bytes"):
        service.start_run(db, "g", {f"x{i}": "v" * 100_000 for i in range(20)})


def test_limits_check_counts_bytes():
    assert limits.check("a", "x" * (limits.MAX_ARG_STRLEN - 1), {}) == []
    assert limits.check("a", "", {"PE_x": "y" * (limits.MAX_ARG_STRLEN - 6)}) == []
    assert len(limits.check("a", "", {"PE_x": "y" * (limits.MAX_ARG_STRLEN - 5)})) == 1


# --- MariaDB's packet limit ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["mariadb"])
def test_a_vertex_over_the_packet_limit_is_refused_with_the_limit(db, unchanged):
    with db.transaction(write=False) as s:
        packet = int(s.execute(text("SELECT @@max_allowed_packet")).scalar_one())
    # One vertex whose input descriptions fill more than a packet once stored: "é" is stored
    # as JSON \u00e9 and sent with its backslash escaped, 7 bytes from 2 in the file.
    per = 40_000
    n = packet // (per * 7) + 1
    vertex = make_vertex("a", "echo", inputs={f"x{i}": {"description": "é" * per} for i in range(n)})
    with unchanged(), pytest.raises(GraphError) as exc:
        service.import_graph(db, GraphSpec(name="g", vertices=(vertex,)))
    assert f"over the server's max_allowed_packet of {packet} bytes" in str(exc.value)
    assert str(exc.value).startswith("graph 'g': vertex 'a' takes about ")
    service.create_graph(db, "h")
    with unchanged(), pytest.raises(GraphError, match="graph 'h': vertex 'a' takes about"):
        service.add_vertex(db, "h", "a", "echo", inputs=vertex.inputs)
    # a graph bigger than a packet in all, each vertex well below it, imports (inserts are chunked)
    many = tuple(make_vertex(f"v{i}", "echo", inputs={"x": {"description": "é" * per}})
                 for i in range(n + 1))
    service.import_graph(db, GraphSpec(name="many", vertices=many))
    assert service.show_graph(db, "many").info.vertices == n + 1

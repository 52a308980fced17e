"""Graph files: YAML and JSON with the same keys; errors name the place; export round-trips."""
import glob
import os

import pytest

from pipeline_engine import graphfile
from pipeline_engine.errors import GraphFileError, InputSchemaError

GOOD = """
name: ping-hosts
description: Ping a host, then report
vertices:
  - name: ping
    script: ping -c 1 {ip}
    inputs:
      ip: {type: ip, required: true, default: 127.0.0.1}
    timeout: 30
    retries: 1
  - name: report
    script: echo done
edges:
  - [ping, report]
"""


def problems(text, fmt=None):
    with pytest.raises(GraphFileError) as exc:
        graphfile.loads(text, fmt)
    return str(exc.value)


def test_the_documented_example_loads():
    spec = graphfile.loads(GOOD)
    assert spec.name == "ping-hosts" and spec.description == "Ping a host, then report"
    ping, report = spec.vertices
    assert (ping.timeout, ping.retries, ping.inputs) == (30.0, 1, {"ip": {"type": "ip", "default": "127.0.0.1"}})
    assert report.script == "echo done" and spec.edges == (("ping", "report"),)


def test_json_with_the_same_keys_loads_to_the_same_spec():
    json_text = graphfile.dumps(graphfile.loads(GOOD), "json")
    assert json_text.lstrip().startswith("{")
    assert graphfile.loads(json_text) == graphfile.loads(GOOD)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "examples", "*.yaml"))))
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_every_example_round_trips(path, fmt):
    spec = graphfile.load(path)
    assert graphfile.loads(graphfile.dumps(spec, fmt), fmt) == spec


def test_multi_line_scripts_export_as_literal_blocks():
    spec = graphfile.loads("name: g\nvertices:\n  - name: a\n    script: |\n      echo one\n      echo two\n")
    out = graphfile.dumps(spec)
    assert "script: |" in out and graphfile.loads(out) == spec


def test_duplicate_vertices_and_unknown_edge_ends_are_named():
    text = """
name: g
vertices:
  - {name: a, script: 'true'}
  - {name: a, script: 'false'}
  - {name: b, script: 'true'}
edges:
  - [a, b]
  - [b, nowhere]
  - [ghost, a]
  - [a, b]
  - [b, b]
"""
    message = problems(text)
    assert "vertex 'a' is declared twice" in message
    assert "edge b -> nowhere: unknown vertex 'nowhere'" in message
    assert "edge ghost -> a: unknown vertex 'ghost'" in message
    assert "edge a -> b is declared twice" in message
    assert "edge b -> b: a vertex cannot depend on itself" in message


def test_unknown_keys_are_named_with_their_place():
    assert "graph: unknown key 'vertexes'" in problems("name: g\nvertexes: []\nvertices: [{name: a, script: x}]")
    message = problems("name: g\nvertices:\n  - {name: a, script: x, timout: 3}\n")
    assert "vertex 'a': unknown key 'timout'" in message
    message = problems("name: g\nvertices:\n  - {name: a, script: x, inputs: {n: {type: int, maximum: 3}}}\n")
    assert "vertex 'a'" in message and "'n'" in message and "maximum" in message


@pytest.mark.parametrize("text, expected", [
    ("name: g\nvertices:\n  - {name: a, script: x, timeout: soon}\n", "vertex 'a': timeout must be a positive number"),
    ("name: g\nvertices:\n  - {name: a, script: x, retries: many}\n", "vertex 'a': retries must be an integer"),
    ("name: g\nvertices:\n  - {name: a, script: [x]}\n", "vertex 'a': script must be a non-empty string"),
    ("name: g\nvertices:\n  - {name: 7, script: x}\n", "vertex name must be a non-empty string, got 7"),
    ("name: g\nvertices:\n  - {script: x}\n", "vertices[0]: missing key 'name'"),
    ("name: g\nvertices:\n  - {name: a}\n", "vertex 'a': missing key 'script'"),
    ("name: g\nvertices: {a: x}\n", "'vertices' must be a non-empty list"),
    ("name: g\nvertices:\n  - {name: a, script: x}\nedges: [[a]]\n", "edge 0 ['a']: must be a [tail, head] pair"),
    ("name: g\nvertices:\n  - {name: a, script: x}\nedges: {a: b}\n", "'edges' must be a list"),
    ("vertices:\n  - {name: a, script: x}\n", "graph: missing key 'name'"),
    ("name: [g]\nvertices:\n  - {name: a, script: x}\n", "graph name must be a non-empty string"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("name: g\nvertices:\n  - {name: a, script: x, script: y}\n", "key 'script' is given twice"),
    ("name: g\nvertices: [\n", "not valid YAML"),
])
def test_wrong_values_are_errors_naming_the_place(text, expected):
    assert expected in problems(text)


def test_bad_json_is_reported():
    assert "not valid JSON" in problems('{"name": "g",', "json")
    assert "key 'name' is given twice" in problems('{"name": "g", "name": "h", "vertices": []}', "json")


def test_input_schema_errors_in_a_file_name_vertex_and_input():
    message = problems("name: g\nvertices:\n  - {name: a, script: 'echo {n}', inputs: {n: {type: float, default: x}}}\n")
    assert "vertex 'a'" in message and "'n'" in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(GraphFileError) as exc:
        graphfile.loads("name: g\nextra: 1\nvertices:\n  - {name: a, script: x, retries: -1}\n"
                        "  - {name: b, script: y}\nedges: [[b, c]]\n")
    assert len(exc.value.problems) == 3


def test_missing_file_and_non_utf8_file(tmp_path):
    with pytest.raises(GraphFileError, match="cannot read graph file"):
        graphfile.load(str(tmp_path / "none.yaml"))
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(GraphFileError, match="not UTF-8"):
        graphfile.load(str(path))


def test_schema_errors_raised_directly_are_input_schema_errors():
    from pipeline_engine.spec import make_vertex

    with pytest.raises(InputSchemaError):
        make_vertex("a", "echo {n}", inputs={"n": {"type": "nope"}})


# --- YAML 1.2 core schema and hostile files (issue 10, item 6) -----------------------------------

def test_yaml_follows_the_core_schema():
    data = graphfile.parse("""
        words: [on, off, yes, no, On, OFF, Yes, NO, y, n]
        text: [0755, 12:30:00, 2024-01-01, 1_000, 0b11, 00, +0755]
        numbers: [0o755, 0x1F, -42, 0, 1e3, 1.5, -.5, .inf, -.Inf]
        bools: [true, True, TRUE, false, False, FALSE]
        nulls: [null, Null, NULL, ~]
        empty:
        quoted: ['true', "0x1F"]
    """)
    assert data["words"] == ["on", "off", "yes", "no", "On", "OFF", "Yes", "NO", "y", "n"]
    assert data["text"] == ["0755", "12:30:00", "2024-01-01", "1_000", "0b11", "00", "+0755"]
    assert data["numbers"] == [0o755, 31, -42, 0, 1000.0, 1.5, -0.5, float("inf"), float("-inf")]
    assert data["bools"] == [True, True, True, False, False, False]
    assert data["nulls"] == [None] * 4 and data["empty"] is None and data["quoted"] == ["true", "0x1F"]


def test_a_text_input_keeps_the_default_as_written():
    spec = graphfile.loads("""
        name: g
        vertices:
          - name: a
            script: echo {m} {t} {h} {f} {b} {n} {c} {i}
            inputs:
              m: {type: str, default: 0755}
              t: {default: 12:30:00}
              h: {type: str, default: 0x1F}
              f: {type: str, default: 1.50}
              b: {type: str, default: TRUE}
              n: {type: str, default: on}
              c: {type: choice, choices: [010, 1e3, yes], default: 1e3}
              i: {type: int, default: 0x1F}
    """)
    defaults = {name: s["default"] for name, s in spec.vertices[0].inputs.items()}
    assert defaults == {"m": "0755", "t": "12:30:00", "h": "0x1F", "f": "1.50", "b": "TRUE", "n": "on",
                        "c": "1e3", "i": 31}
    assert spec.vertices[0].inputs["c"]["choices"] == ["010", "1e3", "yes"]
    # and an export reads back the same, quoted where either YAML version would misread it
    assert graphfile.loads(graphfile.dumps(spec)) == spec


def test_export_quotes_text_the_core_schema_reads_as_numbers():
    spec = graphfile.loads("name: '1e3'\nvertices:\n  - {name: '0o7', script: echo, description: '0x1F'}\n")
    assert graphfile.loads(graphfile.dumps(spec)) == spec


BOMB = "name: bomb\nvertices:\n  - name: a\n    script: echo\n    timeout:\n" \
       "      - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" \
       + "".join(f"      - &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    (BOMB, "line 6: anchors and aliases (&name, *name) are not allowed"),
    ("name: g\nbase: &b {script: echo}\nvertices:\n  - {name: a, <<: *b}\n", "line 2: anchors and aliases"),
    ("name: g\nvertices: " + "[" * 100000, "nested more than 32 levels deep"),
    ('{"name": "g", "vertices": ' + "[" * 100000, "not valid JSON: nested more than 32 levels deep"),
    ('{"name": "g", "vertices": ' + "[" * 40 + "]" * 40 + "}", "not valid JSON: nested more than 32 levels deep"),
    ("name: g\nvertices:\n  - {name: a, script: echo, retries: 1" + "0" * 5000 + "}\n",
     "line 3: a number of more than 100 characters"),
    ('{"name": "g", "vertices": [{"name": "a", "script": "echo", "retries": 1' + "0" * 5000 + "}]}",
     "a number of more than 100 characters"),
    ("name: g\nvertices:\n  - {name: a, script: echo, timeout: 1e400}\n", "timeout must be a positive number"),
    ('{"name": "g", "vertices": [{"name": "a", "script": "echo", "timeout": 1e400}]}',
     "timeout must be a positive number"),
    ("name: g\nvertices:\n  - {name: a, script: echo, timeout: 1e30}\n", "up to 31622400 (a year), got 1e+30"),
    ("name: g\nvertices:\n  - {name: a, script: echo, retries: 1" + "0" * 30 + "}\n",
     "retries must be an integer from 0 to 100, got 1000000000000000000000000000000"),
    ("name: g\nvertices:\n  - {name: a, script: echo, priority: 1" + "0" * 99 + "}\n",
     "priority must be a number from -1e+15 to 1e+15, got an integer of about 100 digits"),
    ("name: g\nvertices:\n  - {name: a, script: echo, priority: -1e300}\n", "priority must be a number from"),
    ("name: g\nvertices:\n  - {name: a, script: 'echo {n}', inputs: {n: {type: int, min: -1e400}}}\n",
     "input 'n': min must be a number"),
])
def test_hostile_files_are_short_errors(text, message):
    found = problems(text)
    assert message in found and len(found) < 400 and "\n" not in found


def test_error_messages_never_print_a_whole_value():
    big = "[" + ", ".join(["x" * 100] * 10000) + "]"
    for text in (f"name: g\nvertices:\n  - {{name: a, script: echo, timeout: {big}}}\n",
                 f"name: g\nvertices:\n  - {{name: a, script: echo, {'k' * 100000}: 1}}\n",
                 f"name: g\nvertices: []\nedges: [{big}]\n",
                 f"name: {'n' * 100000}\nvertices:\n  - {{name: {'v' * 100000}, script: echo, retries: -1}}\n"):
        assert len(problems(text)) < 600


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    # not even valid YAML: the size is checked first
    path.write_bytes(b"name: g\nvertices: [" + b"x" * graphfile.MAX_FILE_BYTES)
    with pytest.raises(GraphFileError, match=r"is \d+ bytes, over the limit of 16777216 bytes \(16 MiB\)"):
        graphfile.load(str(path))
    with pytest.raises(GraphFileError, match="over the limit of 16777216 bytes"):
        graphfile.loads("é" * (graphfile.MAX_FILE_BYTES // 2 + 1))


@pytest.mark.parametrize("key, value", [("pools", False), ("pools", []), ("edges", 0), ("edges", ""),
                                        ("description", False)])
def test_a_false_zero_or_empty_value_of_the_wrong_type_is_refused_not_taken_as_left_out(key, value):
    # found by schemathesis: `pools: false` was read as no pools; null (YAML's empty value) still is
    from pipeline_engine.spec import graph_from_dict

    base = {"name": "g", "vertices": [{"name": "a", "script": "true"}]}
    with pytest.raises(GraphFileError, match=key):
        graph_from_dict({**base, key: value})
    assert graph_from_dict({**base, key: None}).name == "g"

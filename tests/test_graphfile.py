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

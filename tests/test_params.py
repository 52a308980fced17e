"""Typed input schemas, coercion and parameter resolution (pure)."""
import pytest

from pipeline_engine import params
from pipeline_engine.errors import InputSchemaError, ParameterError


def spec(**raw):
    return params.parse_schema("v", {"x": raw})["x"]


@pytest.mark.parametrize("raw, message", [
    ({"type": "ipv9"}, "unknown type 'ipv9'"),
    ({"type": "int", "default": "many"}, "default 'many' is not valid: expected int"),
    ({"type": "choice"}, "needs 'choices'"),
    ({"type": "choice", "choices": []}, "needs 'choices'"),
    ({"type": "choice", "choices": [1, 2]}, "needs 'choices'"),
    ({"type": "str", "choices": ["a"]}, "choices apply to choice inputs"),
    ({"type": "str", "colour": "red"}, "unknown key 'colour'"),
    ({"type": "secret", "default": "hunter2"}, "a secret cannot have a default"),
    ({"type": "str", "min": 1}, "min applies to int and float inputs"),
    ({"type": "int", "min": 5, "max": 1}, "min 5 is greater than max 1"),
    ({"type": "int", "max": "ten"}, "max must be a number"),
    ({"type": "int", "pattern": "x"}, "pattern applies to str and secret"),
    ({"type": "str", "pattern": "("}, "is not a valid regular expression"),
    ({"type": "str", "required": "yes"}, "required must be true or false"),
    ({"type": "str", "description": 3}, "description must be a string"),
    ({"type": "int", "default": 3, "max": 2}, "must be <= 2"),
])
def test_bad_schemas_name_vertex_input_and_reason(raw, message):
    with pytest.raises(InputSchemaError) as exc:
        params.parse_schema("ping", {"ip": raw})
    assert str(exc.value).startswith("vertex 'ping': input 'ip': ") and message in str(exc.value)


def test_bad_input_names_and_shapes():
    with pytest.raises(InputSchemaError, match="input name '1x' is not valid"):
        params.parse_schema("v", {"1x": "str"})
    with pytest.raises(InputSchemaError, match="inputs must be a mapping"):
        params.parse_schema("v", ["x"])
    with pytest.raises(InputSchemaError, match="must be a mapping"):
        params.parse_schema("v", {"x": 3})


def test_shorthand_defaults_and_round_trip():
    schema = params.parse_schema("v", {"a": "int", "b": None, "c": {"type": "choice", "choices": ["x", "y"],
                                                                   "default": "y", "required": False}})
    assert (schema["a"].type, schema["a"].required, schema["b"].type) == ("int", True, "str")
    exported = params.schema_to_dict(schema)
    assert exported == {"a": {"type": "int"}, "b": {"type": "str"},
                        "c": {"type": "choice", "required": False, "default": "y", "choices": ["x", "y"]}}
    assert params.parse_schema("v", exported) == schema


@pytest.mark.parametrize("raw_spec, good, bad", [
    ({"type": "int", "min": -5, "max": 10}, [("3", 3), (" -5 ", -5), (10, 10), ("+7", 7)],
     ["3.5", "x", "", True, "11", "-6", 1.5]),
    ({"type": "float", "min": 0}, [("0.5", 0.5), ("1e3", 1000.0), (2, 2.0), (".5", 0.5)],
     ["nan", "inf", "x", "-1", False]),
    ({"type": "bool"}, [("yes", True), ("OFF", False), ("1", True), (False, False), ("True", True)],
     ["maybe", "2", ""]),
    ({"type": "ip"}, [("127.0.0.1", "127.0.0.1"), ("::0001", "::1"), ("2001:DB8::1", "2001:db8::1")],
     ["256.1.1.1", "localhost", "1.2.3"]),
    ({"type": "choice", "choices": ["eu", "us"]}, [("eu", "eu")], ["EU", "asia", ""]),
    ({"type": "str", "pattern": "[a-z]+"}, [("abc", "abc"), (7, None)], ["ABC", "a b", "a\x00"]),
    ({"type": "secret"}, [("s3cr3t", "s3cr3t"), ("", "")], ["a\x00b", ["list"]]),
])
def test_coercion_of_every_type(raw_spec, good, bad):
    s = spec(**raw_spec)
    for raw, expected in good:
        if expected is None:
            with pytest.raises(ValueError):
                s.coerce(raw)
        else:
            assert s.coerce(raw) == expected
    for raw in bad:
        with pytest.raises(ValueError):
            s.coerce(raw)


def test_values_become_script_text():
    assert spec(type="bool").to_text(True) == "true"
    assert spec(type="bool").to_text(False) == "false"
    assert spec(type="float").to_text(0.5) == "0.5"
    assert spec(type="int").to_text(-3) == "-3"
    assert spec(type="str").to_text(None) == ""


VERTICES = {
    "ping": params.parse_schema("ping", {"ip": {"type": "ip", "default": "127.0.0.1"}, "count": "int"}),
    "report": params.parse_schema("report", {"count": "int", "token": {"type": "secret", "required": False},
                                             "note": {"type": "str", "required": False}}),
    "plain": {},
}


def test_a_plain_key_applies_to_every_declaring_vertex_and_defaults_fill_in():
    values = params.resolve(VERTICES, ["count=3"])
    assert values == {"ping": {"ip": "127.0.0.1", "count": 3},
                      "report": {"count": 3, "token": None, "note": None}, "plain": {}}


def test_a_vertex_key_wins_whatever_the_order():
    for given in (["report.count=9", "count=3"], ["count=3", "report.count=9"]):
        values = params.resolve(VERTICES, given)
        assert values["ping"]["count"] == 3 and values["report"]["count"] == 9
    assert params.resolve(VERTICES, {"count": 4, "ping.ip": "::1"})["ping"] == {"ip": "::1", "count": 4}


def test_every_problem_is_reported_at_once_and_secrets_are_not_echoed():
    with pytest.raises(ParameterError) as exc:
        params.resolve(VERTICES, ["ping.ip=nope", "report.token=\x00hunter2", "colour=red", "ghost.x=1",
                                  "plain.y=2", "novalue"])
    problems = exc.value.problems
    assert "vertex 'ping': input 'ip': expected ip, got 'nope'" in problems
    assert "vertex 'report': input 'count' (int) is required" in problems
    assert "parameter 'colour': no vertex declares an input 'colour'" in problems
    assert "parameter 'ghost.x': no vertex 'ghost'" in problems
    assert "parameter 'plain.y': vertex 'plain' has no input 'y'" in problems
    assert "parameter 'novalue' must be KEY=VALUE or VERTEX.KEY=VALUE" in problems
    assert any(p.startswith("vertex 'report': input 'token'") for p in problems)
    assert "hunter2" not in str(exc.value)


def test_missing_lists_each_required_input_once():
    assert [(v, s.name) for v, s in params.missing(VERTICES, [])] == [("ping", "count")]
    assert params.missing(VERTICES, ["count=1"]) == []
    assert [(v, s.name) for v, s in params.missing(VERTICES, ["ping.count=1"])] == [("report", "count")]


def test_mask_hides_every_occurrence_longest_first():
    assert params.mask("pw=abc abcd abc", ["abc", "abcd", ""]) == "pw=******** ******** ********"

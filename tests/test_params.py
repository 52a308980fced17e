"""Typed input schemas, coercion and parameter resolution (pure)."""
import pytest
from hypothesis import given, strategies as st

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
    for order in (["report.count=9", "count=3"], ["count=3", "report.count=9"]):
        values = params.resolve(VERTICES, order)
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


# --- more schema checks ------------------------------------------------------------------------

def test_more_refusals_name_vertex_and_input():
    cases = [
        ({"type": "choice", "choices": ["a\x00"]}, "needs 'choices'"),
        ({"type": "choice", "choices": "ab"}, "needs 'choices'"),
        ({"type": "float", "min": float("nan")}, "min must be a number"),
        ({"type": "int", "min": True}, "min must be a number"),
        ({"type": "bool", "max": 1}, "max applies to int and float inputs, not bool"),
        ({"type": "secret", "pattern": 3}, "pattern must be a string"),
        ({"type": "ip", "default": "nope"}, "default 'nope' is not valid: expected ip"),
        ({"type": "str", "pattern": "[a-z]+", "default": "ABC"}, "does not match pattern '[a-z]+'"),
        ({"type": "int", "colour": 1, "size": 2}, "unknown keys 'colour', 'size'"),
        ({"type": 3}, "unknown type 3"),
    ]
    for raw, message in cases:
        with pytest.raises(InputSchemaError) as exc:
            params.parse_schema("ping", {"ip": raw})
        assert str(exc.value).startswith("vertex 'ping': input 'ip': ") and message in str(exc.value), raw
    with pytest.raises(InputSchemaError, match="vertex 'v': input name 'a-b' is not valid"):
        params.parse_schema("v", {"a-b": "str"})
    assert params.parse_schema("v", None) == {} and params.parse_schema("v", {}) == {}


def test_the_secret_default_refusal_says_why():
    with pytest.raises(InputSchemaError, match="stored in the graph in clear"):
        params.parse_schema("v", {"pw": {"type": "secret", "default": "x"}})


@pytest.mark.parametrize("raw", [
    {"type": "int", "required": False, "default": 0, "min": 0, "max": 9, "description": "how many"},
    {"type": "float", "default": 0.5, "min": -1.5},
    {"type": "bool", "default": False},
    {"type": "ip", "default": "10.0.0.1", "required": False},
    {"type": "secret", "pattern": "^[A-Z]{4}$"},
    {"type": "choice", "choices": ["a", "b"], "default": "b"},
    {"type": "str", "default": ""},
])
def test_every_field_round_trips_through_export(raw):
    spec = params.parse_schema("v", {"x": raw})["x"]
    assert spec.to_dict() == raw
    assert params.parse_schema("v", {"x": spec.to_dict()})["x"] == spec


def test_defaults_are_coerced_to_the_type():
    schema = params.parse_schema("v", {"n": {"type": "int", "default": "7"}, "f": {"type": "float", "default": 2},
                                       "ip": {"type": "ip", "default": "::0:1"}, "b": {"type": "bool", "default": "on"}})
    assert [schema[k].default for k in ("n", "f", "ip", "b")] == [7, 2.0, "::1", True]
    assert isinstance(schema["f"].default, float)


# --- more coercion -------------------------------------------------------------------------------

@pytest.mark.parametrize("word, value", [(w, True) for w in ("true", "TRUE", "Yes", "on", "1", " yes ")]
                         + [(w, False) for w in ("false", "No", "OFF", "0")])
def test_bool_words(word, value):
    assert spec(type="bool").coerce(word) is value


def test_coercion_edges():
    integer, number, text = spec(type="int"), spec(type="float"), spec(type="str")
    for raw in ("٣", "1_000", "0x10", "1e3", "", " ", None):  # unicode digits, underscores, hex
        with pytest.raises(ValueError, match="expected int"):
            integer.coerce(raw)
    assert integer.coerce(10 ** 30) == 10 ** 30
    for raw in (10 ** 400, "1e999", "-inf", "nan", "1.5.2", "1,5"):
        with pytest.raises(ValueError):
            number.coerce(raw)
    assert (text.coerce(3), text.coerce(1.5), text.coerce(" keep ")) == ("3", "1.5", " keep ")
    with pytest.raises(ValueError, match="expected str, got True"):
        text.coerce(True)
    assert spec(type="choice", choices=["1", "2"]).coerce(2) == "2"
    with pytest.raises(ValueError, match="must be one of: a, b"):
        spec(type="choice", choices=["a", "b"]).coerce("c")
    ip = spec(type="ip")
    assert ip.coerce(" 192.168.000.1 ".replace("000", "0")) == "192.168.0.1"
    assert ip.coerce("2001:0db8:0000:0000:0000:0000:0000:0001") == "2001:db8::1"
    for raw in (3232235777, "1.2.3.4/24", "::g"):
        with pytest.raises(ValueError, match="expected ip"):
            ip.coerce(raw)
    bounded = spec(type="float", min=0.5, max=1)
    assert bounded.coerce("0.5") == 0.5 and bounded.coerce(1) == 1.0
    with pytest.raises(ValueError, match="must be >= 0.5"):
        bounded.coerce("0.49")


def test_a_secret_is_never_in_a_coercion_error():
    secret = spec(type="secret", pattern="[0-9]+")
    for raw in ("hunter2", ["hunter2"], "hunter2\x00"):
        with pytest.raises(ValueError) as exc:
            secret.coerce(raw)
        assert "hunter2" not in str(exc.value)


def test_values_become_script_text_for_every_type():
    assert spec(type="float").to_text(1e20) == "1e+20"
    assert spec(type="float").to_text(3) == "3.0"
    assert spec(type="ip").to_text("2001:db8:0:0::1") == "2001:db8::1"
    assert spec(type="secret").to_text("s") == "s"
    assert spec(type="int").to_text(None) == ""


@given(st.integers())
def test_int_text_round_trips(n):
    s = spec(type="int")
    assert s.coerce(s.to_text(n)) == n


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(x):
    s = spec(type="float")
    assert s.coerce(s.to_text(x)) == x


# --- more resolution ------------------------------------------------------------------------------

def test_a_plain_value_meant_for_a_secret_is_not_echoed_by_another_vertex():
    vertices = {"a": params.parse_schema("a", {"token": "secret"}),
                "b": params.parse_schema("b", {"token": "int"})}
    with pytest.raises(ParameterError) as exc:
        params.resolve(vertices, ["token=hunter2"])
    assert exc.value.problems == ["vertex 'b': input 'token': expected int, got <secret>"]
    assert params.resolve(vertices, ["token=12"]) == {"a": {"token": "12"}, "b": {"token": 12}}


def test_problems_are_sorted_unique_and_the_message_lists_them():
    vertices = {"b": params.parse_schema("b", {"n": "int"}), "a": params.parse_schema("a", {"n": "int"})}
    with pytest.raises(ParameterError) as exc:
        params.resolve(vertices, ["zz=1", "n=x", "a.zz=1"])
    assert exc.value.problems == sorted(exc.value.problems) and len(exc.value.problems) == 4
    assert str(exc.value) == "\n".join(exc.value.problems)


def test_resolution_details():
    vertices = {"my.vertex": params.parse_schema("my.vertex", {"n": "int", "s": {"type": "str", "required": False}})}
    # the vertex name holds a dot: the key splits on the last one
    assert params.resolve(vertices, ["my.vertex.n=1", "s=a=b"]) == {"my.vertex": {"n": 1, "s": "a=b"}}
    assert params.resolve(vertices, ["n=1", "n=2"])["my.vertex"]["n"] == 2  # the last one wins
    assert params.resolve(vertices, {"n": 5}) == {"my.vertex": {"n": 5, "s": None}}
    with pytest.raises(TypeError):
        params.resolve(vertices, "n=1")
    with pytest.raises(ParameterError, match="is required"):
        params.resolve(vertices, None)


def test_missing_asks_once_per_name_and_type():
    vertices = {"a": params.parse_schema("a", {"n": "int", "opt": {"type": "int", "required": False},
                                              "d": {"type": "int", "default": 1}}),
                "b": params.parse_schema("b", {"n": "str", "m": "int"}),
                "c": params.parse_schema("c", {"n": "int"})}
    asked = params.missing(vertices, {})
    assert [(v, s.name, s.type) for v, s in asked] == [("a", "n", "int"), ("b", "n", "str"), ("b", "m", "int")]
    assert all(isinstance(s, params.InputSpec) for _, s in asked)
    assert [(v, s.name) for v, s in params.missing(vertices, ["a.n=1", "b.n=x", "m=2"])] == [("c", "n")]
    assert params.missing(vertices, ["n=1", "m=2", "bad item"]) == []


def test_mask_is_one_pass_and_ignores_empty_secrets():
    assert params.MASK == "********"
    assert params.mask("a ** b", ["**"]) == "a ******** b"
    assert params.mask("abc", ["abc", "**"]) == params.MASK  # a mask is never masked again
    assert params.mask("aaaa", ["aa"]) == "********" * 2
    assert params.mask("nothing here", ["", "zzz"]) == "nothing here"
    assert params.mask("x-abcd-abc", ["abc", "abcd"]) == "x-********-********"


# --- hostile values (issue 10, items 5 and 6) --------------------------------------------------

def test_ip_zone_id_is_an_interface_name_only():
    ip = spec(type="ip")
    assert ip.coerce("fe80::1%eth0") == "fe80::1%eth0"
    assert ip.coerce("fe80::1%br-lan.100") == "fe80::1%br-lan.100"
    assert ip.coerce("fe80::1%3") == "fe80::1%3"
    for raw in ("fe80::1%;touch x", "fe80::1%$(touch x)", "fe80::1%a b", "fe80::1%`id`", "fe80::1%-i",
                "fe80::1%..", "fe80::1%" + "e" * 16, "fe80::1%a\nb"):
        with pytest.raises(ValueError, match="expected ip"):
            ip.coerce(raw)


def test_text_that_is_not_utf8_is_refused_without_showing_a_secret():
    # a command line decodes bytes that are not UTF-8 to lone surrogates
    with pytest.raises(ValueError, match="not valid UTF-8"):
        spec(type="str").coerce("x=\udcff")
    with pytest.raises(ParameterError) as exc:
        params.resolve({"a": {"x": spec(type="secret")}}, ["x=hunter2\udcffxyz"])
    assert "not valid UTF-8" in str(exc.value) and "hunter2" not in str(exc.value)


def test_huge_numbers_are_short_errors():
    integer = spec(type="int")
    for raw in ("1" * 5000, 10 ** 5000):
        with pytest.raises(ValueError, match="at most 4000 digits") as exc:
            integer.coerce(raw)
        assert len(str(exc.value)) < 120
    assert integer.coerce("9" * 4000) == int("9" * 4000)
    for bound in (10 ** 400, -10 ** 400, float("inf")):
        with pytest.raises(InputSchemaError, match="min must be a number"):
            params.parse_schema("a", {"n": {"type": "int", "min": bound}})
    with pytest.raises(InputSchemaError, match="nested too deeply"):
        params.parse_schema("a", {"s": {"type": "str", "pattern": "(" * 100000}})


def test_shown_is_short_whatever_the_value():
    nested = []
    for _ in range(10000):
        nested = [nested]
    for value in (10 ** 5000, "x" * 10 ** 6, list(range(10 ** 5)), nested, {"k" * 1000: "v" * 1000}):
        assert len(params.shown(value)) <= 60

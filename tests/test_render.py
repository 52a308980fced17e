"""Substitution: hostile values reach a real bash as data, byte for byte, and never run."""
import os
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from pipeline_engine import params
from pipeline_engine.errors import InputSchemaError, ParameterError

SCHEMA = params.parse_schema("v", {"x": "str", "n": "int", "pw": {"type": "secret", "required": False}})

HOSTILE = ["a b", "  two  spaces ", "'", '"', "; touch PWNED", "&& touch PWNED", "$(touch PWNED)",
           "`touch PWNED`", "line1\nline2\n", "*", "~", "-n", "\\", "\\n", "$HOME", "${PE_x}", "}}", "{x}",
           "'\"'\"'", "é€😀", "", "EOF", "| touch PWNED", "> PWNED", "$'\\x41'", "!!", "\t"]

# (script, what the file must hold for value h)
CASES = [
    ("printf '%s' {x} > out", lambda h: h),
    ('printf \'%s\' "{x}" > out', lambda h: h),
    ("printf '%s' '{x}' > out", lambda h: h),
    ("printf '%s' pre{x}post > out", lambda h: f"pre{h}post"),
    ("printf '%s' \"a'{x}'b\" > out", lambda h: f"a'{h}'b"),
    ("printf '%s' 'a\"{x}\"b' > out", lambda h: f'a"{h}"b'),
    ("printf '%s' $'\\t{x}' > out", lambda h: f"\t{h}"),
    ("printf '%s' \"$(printf '%s' {x})\" > out", lambda h: h.rstrip("\n")),
    ("f() {{ echo $# > out; }}; f {x}", lambda h: "1\n"),
    ("cat <<EOF > out\n{x}\nEOF", lambda h: f"{h}\n"),
    # <<- strips leading tabs from every line of the body: the value's too, as bash does
    ("cat <<-'END' > out\n\t{x}\nEND", lambda h: "\n".join(x.lstrip("\t") for x in h.split("\n")) + "\n"),
    ("x=$(cat <<EOF\n[{x}]\nEOF\n); printf '%s' \"$x\" > out", lambda h: f"[{h}]".rstrip("\n")),
    ("printf '%s' {x}{x} > out  # and {x} in a comment", lambda h: h + h),
]


def run(script, values, cwd, schema=SCHEMA):
    rendered = params.render(params.compile_script("v", script, schema), values, schema)
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", rendered.script], cwd=cwd,
                            env={**os.environ, **rendered.env}, capture_output=True, timeout=10)
    out = cwd / "out"
    return (out.read_bytes() if out.exists() else None), result, rendered


@pytest.mark.parametrize("script, expected", CASES, ids=[c[0].split(">")[0][:40] for c in CASES])
def test_hostile_values_arrive_byte_for_byte_and_never_run(tmp_path, script, expected):
    for i, value in enumerate(HOSTILE):
        if "EOF" in script and value == "EOF" or "END" in script and value == "END":
            continue
        cwd = tmp_path / str(i)
        cwd.mkdir()
        got, result, _ = run(script, {"x": value, "n": 1}, cwd)
        assert got == expected(value).encode(), (script, value, result.stderr)
        assert not (cwd / "PWNED").exists(), (script, value)


def test_a_quoted_here_document_refuses_a_value_that_would_end_it(tmp_path):
    template = params.compile_script("v", "cat <<'EOF'\n{x}\nEOF\necho after", SCHEMA)
    with pytest.raises(ParameterError, match="equals the here-document delimiter 'EOF'"):
        params.render(template, {"x": "ok\nEOF\ntouch PWNED"}, SCHEMA)


def test_an_unquoted_here_document_takes_its_delimiter_as_data(tmp_path):
    got, _, _ = run("cat <<EOF > out\n{x}\nEOF", {"x": "EOF\ntouch PWNED"}, tmp_path)
    assert got == b"EOF\ntouch PWNED\n" and not (tmp_path / "PWNED").exists()


def test_int_inputs_work_in_arithmetic_and_others_are_refused():
    got_schema = params.parse_schema("v", {"n": "int", "s": "str", "f": "float"})
    rendered = params.render(params.compile_script("v", "echo $(( {n} + 1 )); (( {n} > 0 ))", got_schema),
                             {"n": 41}, got_schema)
    result = subprocess.run(["bash", "-e", "-c", rendered.script], capture_output=True, text=True)
    assert result.stdout == "42\n" and result.returncode == 0
    for script in ("echo $(( {s} + 1 ))", "(( {f} ))", 'echo "$(( {s} ))"'):
        with pytest.raises(InputSchemaError, match="arithmetic"):
            params.compile_script("v", script, got_schema)


def test_shell_braces_and_unknown_words_pass_through():
    schema = params.parse_schema("v", {"HOME": "str", "x": "str"})
    template = params.compile_script("v", "echo ${HOME} {a,b} {{x}} {who} $(awk '{print $1}')", schema)
    rendered = params.render(template, {"HOME": "h", "x": "v"}, schema)
    assert rendered.script == "echo ${HOME} {a,b} {x} {who} $(awk '{print $1}')"
    assert template.unknown == ("who",) and template.placeholders == ()


def test_backslash_before_a_placeholder_does_not_swallow_it(tmp_path):
    got, _, _ = run("printf '%s' \\\\{x} > out", {"x": "; touch PWNED"}, tmp_path)
    assert got == b"\\; touch PWNED" and not (tmp_path / "PWNED").exists()


def test_secrets_never_appear_in_the_script_or_its_shown_form(tmp_path):
    got, _, rendered = run('printf "%s" "{pw}" > out', {"x": "", "n": 0, "pw": "hunter2"}, tmp_path)
    assert got == b"hunter2"
    assert "hunter2" not in rendered.script and "hunter2" not in rendered.shown
    template = params.compile_script("v", "cat <<'EOF' > out\n{pw}\nEOF", SCHEMA)
    rendered = params.render(template, {"pw": "hunter2"}, SCHEMA)
    assert "hunter2" in rendered.script and "hunter2" not in rendered.shown and params.MASK in rendered.shown


def test_every_input_is_in_the_environment():
    rendered = params.render(params.compile_script("v", "true", SCHEMA), {"x": "a", "n": 5, "pw": None}, SCHEMA)
    assert rendered.env == {"PE_x": "a", "PE_n": "5", "PE_pw": ""}


ALPHABET = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
HOSTILE_TEXT = st.one_of(st.text(ALPHABET, max_size=40),
                         st.text(st.sampled_from(list("'\"`$(){};&|<>*?~!#\\\n\t -EOF")), max_size=40))


@settings(max_examples=60, deadline=None)
@given(HOSTILE_TEXT)
def test_arbitrary_text_in_every_quoting_position(tmp_path_factory, value):
    cwd = tmp_path_factory.mktemp("h")
    script = "printf '%s|' {x} \"{x}\" '{x}' > out"
    got, result, _ = run(script, {"x": value}, cwd)
    assert got == f"{value}|{value}|{value}|".encode(), result.stderr
    assert not (cwd / "PWNED").exists()

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


# --- more quoting contexts: each must deliver every hostile value exactly -------------------------

EXTRA_CASES = [
    ("unset y; printf '%s' ${y-{x}} > out", lambda h: h),
    ("y=; printf '%s' \"${y:-{x}}\" > out", lambda h: h),
    # a quoted reference also keeps & literal in a replacement (bash 5.2 patsub_replacement)
    ("y=ZaZ; printf '%s' \"${y/a/{x}}\" > out", lambda h: f"Z{h}Z"),
    ("y=; cat <<DATA > out\n${y:-{x}}\nDATA", lambda h: f"{h}\n"),
    ("cat - /dev/fd/3 <<A 3<<'B' > out\n1{x}\nA\n2{x}\nB", lambda h: f"1{h}\n2{h}\n"),
    ("cat <<'DATA' > out\nH\nDATA\nprintf \"'%s'\" '{x}' >> out", lambda h: f"H\n'{h}'"),
    ("v=\"$(cat <<'DATA'\n<{x}>\nDATA\n)\"; printf '%s' \"$v\" > out", lambda h: f"<{h}>"),
    ("v=\"$(case a in a) printf '%s' {x};; esac)\"; printf '%s|%s' \"$v\" '{x}' > out",
     lambda h: h.rstrip("\n") + "|" + h),
    ("# it's a comment with {x}\nprintf '%s' '{x}' > out", lambda h: h),
    ("printf '%s' a#b'{x}' > out", lambda h: f"a#b{h}"),
    ("printf '%s' $'\\'{x}' > out", lambda h: f"'{h}"),
    ("v=`printf '%s' {x}`; printf '%s' \"$v\" > out", lambda h: h.rstrip("\n")),
    ("cat <<< {x} > out", lambda h: f"{h}\n"),
    ("cat <(printf '%s' {x}) > out", lambda h: h),
    ("printf '%s' \"$(printf '%s' \"$(printf '%s' '{x}')\")\" > out", lambda h: h.rstrip("\n")),
    ("(printf '%s' {x}) > out", lambda h: h),
    ("{{ printf '%s' {x}; }} > out", lambda h: h),
    ("printf '%s' \"$(( {n} * 2 ))\"{x} > out", lambda h: f"6{h}"),
    ("(( {n} == 3 )) && printf '%s' {x} > out", lambda h: h),
    ("a=(a b c d); printf '%s' \"${a[{n}-1]}\"{x} > out", lambda h: f"c{h}"),
    ("s=abcdef; printf '%s' ${s:{n}:2}{x} > out", lambda h: f"de{h}"),
    ("printf '%s' $[ {n} + 1 ]'{x}' > out", lambda h: f"4{h}"),
    ("for (( i=0; i<{n}; i++ )); do printf '%s' $i; done > out; printf '%s' {x} >> out", lambda h: f"012{h}"),
    ("printf '%s' \"\\\\\\\"{x}\" > out", lambda h: f'\\"{h}'),
    ("printf '%s' \"$'{x}'\" > out", lambda h: f"$'{h}'"),
    ("cat <<-DATA > out\n\t{x}\n\tDATA", lambda h: f"{h}\n"),
    ("printf '%s' $\"{x}\" > out", lambda h: h),
    ("printf '%s' ${#}{x} esac{x} > out", lambda h: f"0{h}esac{h}"),
]


@pytest.mark.parametrize("script, expected", EXTRA_CASES, ids=[c[0][:40] for c in EXTRA_CASES])
def test_more_contexts_deliver_hostile_values_exactly(tmp_path, script, expected):
    for i, value in enumerate(HOSTILE):
        cwd = tmp_path / str(i)
        cwd.mkdir()
        got, result, _ = run(script, {"x": value, "n": 3}, cwd)
        assert got == expected(value).encode(), (script, value, result.stderr)
        assert not (cwd / "PWNED").exists(), (script, value)


# --- places where no reference is safe are refused --------------------------------------------------

@pytest.mark.parametrize("script, reason", [
    ("echo \\{x}", "backslash"),  # \"${PE_x}" would leave a stray " open
    ('echo "\\{x}"', "backslash"),
    ("echo $'\\{x}'", "backslash"),
    ("cat <<E\n\\{x}\nE", "backslash"),
    ("cat <<{x}\nhi\n", "here-document delimiter"),
    ("cat << {x}\nhi\n", "here-document delimiter"),
    ("cat <<'E'{x}\nhi\n", "here-document delimiter"),
    ("v=`cat <<'E'\n{x}\nE\n`", "backticks"),  # bash finds the closing backtick first
    ('a=(1 2); echo "${a[{x}]}"', "arithmetic"),  # indexed subscripts are arithmetic
    ("s=abc; echo ${s:{x}}", "arithmetic"),
    ("echo $[ {x} ]", "arithmetic"),
    ("for (( i=0; i<{x}; i++ )); do :; done", "arithmetic"),
    ('echo "$(( $(( {x} )) ))"', "arithmetic"),
])
def test_placeholders_where_no_reference_is_safe_are_refused(script, reason):
    with pytest.raises(InputSchemaError, match=reason) as exc:
        params.compile_script("v", script, SCHEMA)
    assert str(exc.value).startswith("vertex 'v': input 'x'")


def test_a_secret_or_float_is_refused_in_arithmetic_but_int_is_not():
    schema = params.parse_schema("v", {"pw": "secret", "f": "float", "n": "int"})
    for name in ("pw", "f"):
        with pytest.raises(InputSchemaError, match=rf"input '{name}' \(\w+\) stands in arithmetic"):
            params.compile_script("v", f"echo $(( {{{name}}} ))", schema)
    assert params.compile_script("v", "echo $(( {n} ))", schema).placeholders == ("n",)


def test_a_backslash_is_literal_where_bash_does_not_escape(tmp_path):
    got, _, _ = run("printf '%s' '\\{x}' > out", {"x": "; touch PWNED"}, tmp_path)
    assert got == b"\\; touch PWNED" and not (tmp_path / "PWNED").exists()
    got, _, _ = run("cat <<'E' > out\n\\{x}\nE", {"x": "$(touch PWNED)"}, tmp_path)
    assert got == b"\\$(touch PWNED)\n" and not (tmp_path / "PWNED").exists()


def test_a_substitution_ends_a_quoted_here_document_early_so_such_values_are_refused(tmp_path):
    # bash 5.2 ends a here-document inside $( ) at a line that starts with its delimiter and
    # holds a ')': the rest of the value would run as code
    template = params.compile_script("v", "v=$(cat <<'E'\n{x}\nE\n)\nprintf '%s' \"$v\" > out", SCHEMA)
    for value in ("E) ; touch PWNED", "E )", "Ever"):
        with pytest.raises(ParameterError, match="here-document delimiter 'E'"):
            params.render(template, {"x": value}, SCHEMA)
    got, _, _ = run(template.source, {"x": "x E) ; touch PWNED"}, tmp_path)
    assert got == b"x E) ; touch PWNED" and not (tmp_path / "PWNED").exists()


def test_a_quoted_here_document_value_is_checked_with_the_text_around_it(tmp_path):
    template = params.compile_script("v", "cat <<'EOF' > out\nE{x}\nEOF\n", SCHEMA)
    with pytest.raises(ParameterError, match="here-document delimiter 'EOF'"):
        params.render(template, {"x": "OF\ntouch PWNED"}, SCHEMA)
    with pytest.raises(ParameterError, match="here-document delimiter 'EOF'"):
        params.render(template, {"x": "x\nEOF"}, SCHEMA)
    # at the top level only a whole line ends it: a longer line is data
    got, _, _ = run(template.source, {"x": "OFx\nEOF2"}, tmp_path)
    assert got == b"EOFx\nEOF2\n"


def test_a_tab_stripping_here_document_compares_lines_without_their_tabs():
    template = params.compile_script("v", "cat <<-'EOF'\n\t{x}\nEOF", SCHEMA)
    with pytest.raises(ParameterError):
        params.render(template, {"x": "ok\n\t\tEOF"}, SCHEMA)
    template = params.compile_script("v", "cat <<'EOF'\n{x}\nEOF", SCHEMA)
    assert "\tEOF" in params.render(template, {"x": "\tEOF"}, SCHEMA).script


def test_placeholders_and_unknown_words_are_listed_once_in_order():
    template = params.compile_script("v", "echo {n} {b} {x} {a} {n} {b} ${a} $((1)) {{c}}", SCHEMA)
    assert template.placeholders == ("n", "x")
    assert template.unknown == ("b", "a")
    assert params.compile_script("v", "{x}", SCHEMA).parts[0].form == "quoted"


def test_render_checks_values_again():
    template = params.compile_script("v", "echo $(( {n} )) {x}", SCHEMA)
    with pytest.raises(ParameterError, match="input 'n': expected int"):
        params.render(template, {"n": "a[$(touch PWNED)]"}, SCHEMA)
    with pytest.raises(ParameterError, match="NUL"):
        params.render(template, {"n": 1, "x": "a\x00b"}, SCHEMA)
    with pytest.raises(ParameterError) as exc:
        params.render(template, {"n": 1, "pw": ["hunter2"]}, SCHEMA)
    assert "hunter2" not in str(exc.value)
    assert params.render(template, {"n": "7"}, SCHEMA).script == 'echo $(( 7 )) "${PE_x}"'


def test_an_empty_int_in_arithmetic_counts_as_zero(tmp_path):
    schema = params.parse_schema("v", {"n": {"type": "int", "required": False}})
    rendered = params.render(params.compile_script("v", "echo $(( {n} + 1 ))", schema), {}, schema)
    result = subprocess.run(["bash", "-c", rendered.script], env={**os.environ, **rendered.env},
                            capture_output=True, text=True)
    assert result.stdout == "1\n" and rendered.env == {"PE_n": ""}


def test_a_secret_in_a_quoted_here_document_is_masked_wherever_it_is_shown():
    template = params.compile_script("v", "cat <<'EOF'\nkey={pw} and {pw}\nEOF\necho \"{pw}\"", SCHEMA)
    rendered = params.render(template, {"pw": "hunter2"}, SCHEMA)
    assert rendered.script.count("hunter2") == 2
    assert rendered.shown == f"cat <<'EOF'\nkey={params.MASK} and {params.MASK}\nEOF\necho \"${{PE_pw}}\""


# --- hypothesis: arbitrary values in more contexts, and arbitrary scripts around them ---------------

@settings(max_examples=40, deadline=None)
@given(HOSTILE_TEXT)
def test_arbitrary_text_in_more_contexts(tmp_path_factory, value):
    cwd = tmp_path_factory.mktemp("h")
    script = ("printf '%s|' $'{x}' \"$(printf '%s' {x})\" \"`printf '%s' {x}`\" > out\n"
              "cat <<E >> out\n{x}\nE\ncat <<'Q' >> out\n{x}\nQ")
    try:
        got, result, rendered = run(script, {"x": value}, cwd)
    except ParameterError:
        # only a value with a line that would end the quoted here-document is refused
        assert "Q" in value.split("\n")
        return
    chomped = value.rstrip("\n")
    assert got == f"{value}|{chomped}|{chomped}|{value}\n{value}\n".encode(), result.stderr
    assert not (cwd / "PWNED").exists()


FRAGMENTS = ["'", '"', "$(", ")", "`", "${", "}", "{x}", "{x}", "{x}", "$'", "\\", "\\\\", "#", " ", "\n",
             ";", "(", "((", "))", "<<EOF", "<<'EOF'", "<<-E", "EOF", "E", "\t", "$((", "$[", "]", "[",
             "case ", "esac ", "a", "$", "{{", "}}", "<<<", "|", ":", "=", "$#", "<(", "\"$(",
             "cat <<'Q'\n{x}\nQ\n"]
ATTACKS = ["$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", "\"; touch PWNED; \"", "\ntouch PWNED\n",
           "EOF\ntouch PWNED", "Q\ntouch PWNED", "a[$(touch PWNED)]", "EOF) ; touch PWNED", "Q) ; touch PWNED"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=3, max_size=14).map("".join))
def test_no_script_lets_a_value_run_as_code(tmp_path_factory, script):
    """Whatever the script around them (mostly nonsense to bash), values never run."""
    try:
        template = params.compile_script("v", script, SCHEMA)
    except InputSchemaError:
        return
    cwd = tmp_path_factory.mktemp("f")
    for value in ATTACKS:
        try:
            rendered = params.render(template, {"x": value}, SCHEMA)
        except ParameterError:
            continue
        subprocess.run(["bash", "-c", rendered.script], cwd=cwd, env={**os.environ, **rendered.env},
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        assert not (cwd / "PWNED").exists(), (script, value, rendered.script)

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
    # <<- strips leading tabs from the script's lines; a value arrives by reference, untouched
    ("cat <<-END > out\n\t{x}\nEND", lambda h: f"{h}\n"),
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
    ("cat - /dev/fd/3 <<A 3<<B > out\n1{x}\nA\n2{x}\nB", lambda h: f"1{h}\n2{h}\n"),
    ("cat <<'DATA' > out\nH\nDATA\nprintf \"'%s'\" '{x}' >> out", lambda h: f"H\n'{h}'"),
    ("v=\"$(cat <<DATA\n<{x}>\nDATA\n)\"; printf '%s' \"$v\" > out", lambda h: f"<{h}>"),
    ("v=\"$(case a in a) printf '%s' {x};; esac)\"; printf '%s|%s' \"$v\" '{x}' > out",
     lambda h: h.rstrip("\n") + "|" + h),
    ("case {x} in (*) printf '%s' {x} > out;; esac", lambda h: h),
    ("case a in a|{x}) printf '%s' {x} > out;; esac", lambda h: h),
    ("# it's a comment with {x}\nprintf '%s' '{x}' > out", lambda h: h),
    ("printf '%s' a#b'{x}' > out", lambda h: f"a#b{h}"),
    ("printf '%s' $'\\'{x}' > out", lambda h: f"'{h}"),
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
    ("for((i=0;i<{n};i++)); do printf '%s' $i; done > out; printf '%s' {x} >> out", lambda h: f"012{h}"),
    ("printf '%s' \"\\\\\\\"{x}\" > out", lambda h: f'\\"{h}'),
    ("printf '%s' \"$'{x}'\" > out", lambda h: f"$'{h}'"),
    ("cat <<-DATA > out\n\t{x}\n\tDATA", lambda h: f"{h}\n"),
    ("printf '%s' $\"{x}\" > out", lambda h: h),
    ("printf '%s' ${#}{x} esac{x} > out", lambda h: f"0{h}esac{h}"),
    # assignments, declarations and arrays take a value as data
    ("A={x}; printf '%s' \"$A\" > out", lambda h: h),
    ("export A={x}; printf '%s' \"$A\" > out", lambda h: h),
    ("f() {{ local B=\"{x}\"; printf '%s' \"$B\" > out; }}; f", lambda h: h),
    ("a=({x} b); printf '%s' \"${a[0]}\" > out", lambda h: h),
    ("declare -a a=(z {x}); printf '%s' \"${a[1]}\" > out", lambda h: h),
    ("A={x} bash -c 'printf %s \"$A\"' > out", lambda h: h),
    ("printf -v got '%s' {x}; printf '%s' \"$got\" > out", lambda h: h),
    ("printf -- {x} > /dev/null; printf '%s' {x} > out", lambda h: h),
    ("set -- {x}; printf '%s' \"$1\" > out", lambda h: h),
    # tests and conditions: data wherever no operator makes it a name or arithmetic
    ("[[ {x} == \"$(printf '%s' {x})\" || -n {x} ]]; printf '%s' {x} > out", lambda h: h),
    ("[[ a =~ ^(a|b)$ ]] && printf '%s' {x} > out", lambda h: h),
    ("[ -n {x} ] || [ -z {x} ]; test {x} = {x} && printf '%s' {x} > out", lambda h: h),
    ("[[ {n} -eq 3 ]] && printf '%s' {x} > out", lambda h: h),
    ("for v in a {x}; do printf '%s' \"$v\" > out; done", lambda h: h),
    ("if true; then printf '%s' {x} > out; fi", lambda h: h),
    ("while ! true; do :; done; until true; do :; done; printf '%s' {x} > out", lambda h: h),
    ("f() {{ printf '%s' \"$1\" > out; }}\nf {x}", lambda h: h),
    ("function g {{ printf '%s' \"$1\" > out; }}; g {x}", lambda h: h),
    ("/usr/bin/printf '%s' {x} > out", lambda h: h),
    ("exec 3> out; printf '%s' {x} >&3", lambda h: h),
    ("printf '%s' {x} &> out", lambda h: h),
    ("printf '%s' &>> out {x}", lambda h: h),
    ("printf '%s' {x} > out 2>&1; printf '' 2>&{n} 3>&{n}", lambda h: h),
    ("v=$(printf '%s' {x}); printf '%s' \"$v\" > out", lambda h: h.rstrip("\n")),
    ("printf '%s' {x} | cat > out", lambda h: h),
    ("cat <<E | cat > out\n{x}\nE", lambda h: f"{h}\n"),
    ("A=1 [[ -v {x} ]] 2> /dev/null || printf '%s' {x} > out", lambda h: h),  # [[ is a command there
    ("for v in a # it's \"a comment\ndo printf '%s' {x} > out; done", lambda h: h),
    ("echo start \\\n  | cat > /dev/null; printf '%s' {x} > out", lambda h: h),
]


@pytest.mark.parametrize("script, expected", EXTRA_CASES, ids=[c[0][:40] for c in EXTRA_CASES])
def test_more_contexts_deliver_hostile_values_exactly(tmp_path, script, expected):
    for i, value in enumerate(HOSTILE):
        cwd = tmp_path / str(i)
        cwd.mkdir()
        got, result, _ = run(script, {"x": value, "n": 3}, cwd)
        assert got == expected(value).encode(), (script, value, result.stderr)
        assert not (cwd / "PWNED").exists(), (script, value)


# --- default-deny: where a value would not be data, the placeholder is refused at save ---------------

@pytest.mark.parametrize("script, reason", [
    ("echo \\{x}", "follows a backslash"),  # \\"${PE_x}" would leave a stray " open
    ('echo "\\{x}"', "follows a backslash"),
    ("echo $'\\{x}'", "follows a backslash"),
    ("cat <<E\n\\{x}\nE", "follows a backslash"),
    ("cat <<{x}\nhi\n", "here-document delimiter"),
    ("cat << {x}\nhi\n", "here-document delimiter"),
    ("cat <<'E'{x}\nhi\n", "here-document delimiter"),
    ("cat <<'EOF'\n{x}\nEOF", r"at line 2 stands in a quoted here-document \(<<'EOF'\).*use an unquoted"),
    ('cat <<"EOF"\n{x}\nEOF', "quoted here-document"),
    ("cat <<\\EOF\n{x}\nEOF", "quoted here-document"),
    ("v=$(cat <<'E'\n{x}\nE\n)", "quoted here-document"),
    ("v=`printf '%s' {x}`", "inside backticks"),
    ("v=`cat <<'E'\n{x}\nE\n`", "inside backticks"),
    ("unset y; printf '%s' ${y-{x}}", "parameter expansion"),
    ('y=; printf "%s" "${y:-{x}}"', "parameter expansion"),
    ('y=ZaZ; printf "%s" "${y/a/{x}}"', "parameter expansion"),
    ("y=; cat <<D\n${y:-{x}}\nD", "parameter expansion"),
    # arithmetic, in every form the issue names
    ('a=(1 2); echo "${a[{x}]}"', r"stands in arithmetic \('an array subscript"),
    ("s=abc; echo ${s:{x}}", "arithmetic"),
    ('arr=(abcdef); echo "${arr[0]:{x}}"', "arithmetic"),
    ("echo $[ {x} ]", "arithmetic"),
    ("for (( i=0; i<{x}; i++ )); do :; done", r"at line 1 stands in arithmetic \('for \(\(…\)\)'\)"),
    ("for((i=0;i<{x};i++)); do echo $i; done", r"arithmetic \('for \(\(…\)\)'\)"),
    ("if true; then((i<{x})); fi", r"arithmetic \('\(\( \)\)'\)"),
    ("for i in 1; do(({x})); done", "arithmetic"),
    ("while(({x})); do :; done", "arithmetic"),
    ("if false; then :; else(({x})); fi", "arithmetic"),
    ("time(({x}))", "arithmetic"),
    ('echo "$(( $(( {x} )) ))"', "arithmetic"),
    ("a=([{x}]=v)", "arithmetic"),
    ("a+=([{x}]=v)", "arithmetic"),
    ("declare -a a=([{x}]=v)", "arithmetic"),
    ("a[{x}]=v", "arithmetic"),
    ("let {x}", r"arithmetic \('let'\)"),
    ("let 'y = {x}'", "arithmetic"),
    ("declare -i n; n={x}", r"integer attribute \(declare -i at line 1\)"),
    ("n={x}; declare -i n", "integer attribute"),
    ("f() {{ local -i n={x}; }}", "integer attribute"),
    ("declare -i n\nread n <<< {x}", "integer attribute"),  # read evaluates what it assigns to n
    ("typeset -ai n=(1)\nfor n in {x}; do :; done", "integer attribute"),
    # variables that change what bash runs or how it reads the rest
    ("PATH={x}; ls", r"assigned to 'PATH='"),
    ("export PATH={x}:$PATH", "'PATH='"),
    ("PS4={x}; set -x; true", "'PS4='"),
    ("BASH_ENV={x} bash -c true", "'BASH_ENV='"),
    ("LC_ALL={x}; echo", "'LC_ALL='"),
    ("LD_PRELOAD={x} ls", "'LD_PRELOAD='"),
    ("[[ {x} -eq 1 ]]", r"arithmetic \('\[\[ -eq \]\]'\)"),
    ("[[ 1 -lt {x} ]]", "arithmetic"),
    # names
    ("read {x}", "variable name"),
    ("read -r -- {x}", "variable name"),
    ("read -a {x}", "variable name"),
    ("mapfile -t {x} < /dev/null", "variable name"),
    ("printf -v {x} hi", r"variable name \('printf -v'\)"),
    ("declare {x}", "variable name"),
    ("local {x}=1", "variable name"),
    ("export {x}", "variable name"),
    ("readonly {x}", "variable name"),
    ("unset {x}", "variable name"),
    ("[[ -v {x} ]]", r"variable name \('\[\[ -v \]\]'\)"),
    ("test -v {x}", "variable name"),
    ("[ -v {x} ]", "variable name"),
    ("[ {x} {x} ]", "variable name"),  # the first value could be -v
    ("declare -n ref={x}", "variable name"),
    ("declare -n ref; ref={x}", r"variable name \('ref=, a reference"),
    ("for {x} in a; do :; done", "variable name"),
    ("getopts ab {x}", "variable name"),
    # options, code, commands
    ("printf {x}", "reads its options"),
    ("set {x}", "reads its options"),
    ("eval {x}", r"is an argument of 'eval'"),
    ("eval \"echo {x}\"", "'eval'"),
    ("source {x}", "'source'"),
    (". {x}", "'.'"),
    ("bash -c {x}", "'bash'"),
    ("sh -c \"echo {x}\"", "'sh'"),
    ("trap {x} EXIT", "'trap'"),
    ("exec {x}", "'exec'"),
    ("command {x}", "'command'"),
    ("env {x}", "'env'"),
    ("/usr/bin/env {x}", "'/usr/bin/env'"),
    ("xargs {x} < /dev/null", "'xargs'"),
    ("ssh host {x}", "'ssh'"),
    ("shopt -s {x}", "'shopt'"),
    ("{x} --version", "names the command to run"),
    ("\"{x}\" --version", "names the command to run"),
    ("A=1 {x}", "names the command to run"),
    ("{x}() {{ :; }}", "names the command to run"),
    ("function {x} {{ :; }}", "names the command to run"),
    ("$cmd {x}", "a command the script does not name"),
    ("{{eval,true}} {x}", "a command the script does not name"),  # brace expansion gives eval
    ("ev*l {x}", "a command the script does not name"),  # a glob may match a file named eval
    ("$(printf %s {x}) arg", "names the command to run"),
    # a value inside a substitution becomes part of the word it stands in
    ("[[ $(printf %s {x}) -eq 1 ]]", "arithmetic"),
    ("read \"$(printf %s {x})\"", "variable name"),
    ("eval \"$(printf '%s' {x})\"", "'eval'"),
    ("source <(printf '%s' {x})", "'source'"),
    ("PATH=$(printf %s {x}):$PATH", "'PATH='"),
    ("PATH=($(printf %s {x}))", "'PATH='"),
    # what a shell reads on its standard input is code
    ("bash <<EOF\necho {x}\nEOF", "'bash'"),
    ("bash <<< {x}", "'bash'"),
    ("sh < <(printf '%s' {x})", "'sh'"),
    ("printf '%s' {x} | bash", r"'… \| bash'"),
    ("printf '%s' {x} | (cat; bash)", "bash"),
    ("printf '%s' {x} | {{ cat; bash; }}", "bash"),
    ("printf '%s' {x} | while read -r l; do sh; done", "sh"),
    ("printf '%s' {x} | $runner", "a command the script does not name"),
    ("printf '%s' {x} > >(bash)", "bash"),
    ("exec > >(bash)\nprintf '%s' {x}", "bash"),
    # bash 5.2 expands the target of >& again when it is not a number: found by the fuzzer
    ("printf a >&{x}", r"target of '>&'"),
    ("printf a 1>&\"{x}\"", "target of '>&'"),
    ("printf a >& \"$(printf %s {x})\"", "target of '>&'"),
    # &> is one redirection: what follows it is still the same command's arguments
    ("eval &>/dev/null true {x}", "'eval'"),
    ("read &>> /dev/null v {x}", "variable name"),
    ("\"$(echo echo)\" {x}", "a command the script does not name"),
])
def test_placeholders_where_a_value_would_not_be_data_are_refused(script, reason):
    with pytest.raises(InputSchemaError, match=reason) as exc:
        params.compile_script("v", script, SCHEMA)
    assert str(exc.value).startswith("vertex 'v': {x} at line ")


@pytest.mark.parametrize("script", [
    "cat <<$'EOF'\nheader\nEOF\necho {x}",
    "cat <<E$'OF'\nheader\nEOF\necho {x}",
    "cat <<$\"EOF\"\nheader\nEOF\necho {x}",
    "cat <<E'OF'\nheader\nEOF\necho {x}",
    "cat <<E-F\nx\nE-F\necho {x}",
    "cat <<$d\nx\n$d\necho {x}",
    "echo $((echo a);(echo b)) {x}",  # bash: a command substitution of two subshells
    "echo $(( $(echo 1) + 1 )) {x}",
    "echo $(( 1 + \"2\" )) {x}",
    "coproc cat; echo {x}",
    "shopt -s extglob\necho @(a|b) {x}",
    "echo {x}; echo 'unclosed",
    "echo {x}; echo \"unclosed",
    "echo {x}; echo $(unclosed",
    "echo {x}; cat <<EOF\nnever ended",
    "v=$(cat <<E\nEnd of a line that starts with E\nE\n)\necho {x}",
    "echo \"${y:-'a'}\" {x}",
    "echo {x} >#comment",
    "echo {x} ) ",
    "echo {x} ;; ",
    "shopt -s expand_aliases\nalias say=eval\nsay {x}",
    "shopt -s compat41\necho {x}",
    "set -o posix; echo {x}",
    "set -k; echo PATH={x}",
    "set -ek\necho {x}",
    # bash joins a body line ending in a backslash with the next before it looks for the delimiter
    'cat <<E\nfoo\\\nE\n"\nE\n{x}\n"',
])
def test_a_script_the_reader_cannot_follow_takes_no_placeholder(script):
    with pytest.raises(InputSchemaError, match="cannot read this script with certainty") as exc:
        params.compile_script("v", script, SCHEMA)
    assert str(exc.value).startswith("vertex 'v': line ")
    # without a placeholder the same script is the script's own business
    no_placeholder = script.replace("{x}", "x")
    assert params.compile_script("v", no_placeholder, SCHEMA).placeholders == ()


@pytest.mark.parametrize("script", [
    "echo $(( {n} + 1 ))", "(( {n} > 0 ))", "for ((i=0;i<{n};i++)); do :; done", "a[{n}]=1",
    "read {n} < /dev/null", "let {n}", "declare -i m={n}", "[[ {n} -eq 1 ]]", "printf -v v{n} x",
    "timeout {n} true", "[[ -v {n} ]]",
])
def test_an_int_may_stand_in_arithmetic_and_name_positions(script):
    schema = params.parse_schema("v", {"n": "int"})
    assert params.compile_script("v", script, schema).placeholders == ("n",)


def test_a_secret_or_float_is_refused_in_arithmetic_but_int_is_not():
    schema = params.parse_schema("v", {"pw": "secret", "f": "float", "n": "int"})
    for name, kind in (("pw", "secret"), ("f", "float")):
        with pytest.raises(InputSchemaError, match=rf"{{{name}}} at line 1 stands in arithmetic .*'{name}' is {kind}"):
            params.compile_script("v", f"echo $(( {{{name}}} ))", schema)
    assert params.compile_script("v", "echo $(( {n} ))", schema).placeholders == ("n",)


def test_the_error_names_the_line_and_the_construct():
    schema = params.parse_schema("a", {"n": "str"})
    with pytest.raises(InputSchemaError) as exc:
        params.compile_script("a", "echo start\nfor((i=0;i<{n};i++)); do echo $i; done", schema)
    assert str(exc.value) == ("vertex 'a': {n} at line 2 stands in arithmetic ('for ((…))'): only int inputs"
                              " may stand there ('n' is str)")


def test_a_here_document_line_ending_in_a_backslash_continues_on_the_next(tmp_path):
    # bash reads "foo\\\nE" as one line "fooE": the document ends at the second E, and {x}
    # after it stands at command level, not in the document (an odd number of backslashes only)
    script = "cat <<E > out\nfoo\\\nE\nbar\nE\nprintf '%s' {x} >> out"
    got, result, rendered = run(script, {"x": "touch PWNED"}, tmp_path)
    assert got == b"fooE\nbar\ntouch PWNED" and not (tmp_path / "PWNED").exists(), result.stderr
    assert rendered.script.endswith('printf \'%s\' "${PE_x}" >> out')
    script = "cat <<E > out\nfoo\\\\\nE\nprintf '%s' {x} >> out"
    got, result, _ = run(script, {"x": "v"}, tmp_path)
    assert got == b"foo\\\nv", result.stderr


def test_a_backslash_is_literal_where_bash_does_not_escape(tmp_path):
    got, _, _ = run("printf '%s' '\\{x}' > out", {"x": "; touch PWNED"}, tmp_path)
    assert got == b"\\; touch PWNED" and not (tmp_path / "PWNED").exists()


def test_a_here_document_inside_a_substitution_ends_only_at_its_delimiter(tmp_path):
    script = "v=$(cat <<E\n{x}\nE\n)\nprintf '%s' \"$v\" > out"
    for value in ("E) ; touch PWNED", "E )", "Ever", "E\ntouch PWNED"):
        got, result, _ = run(script, {"x": value}, tmp_path)
        assert got == value.encode() and not (tmp_path / "PWNED").exists(), result.stderr


def test_placeholders_and_unknown_words_are_listed_once_in_order():
    template = params.compile_script("v", "echo {n} {b} {x} {a} {n} {b} ${a} $((1)) {{c}}", SCHEMA)
    assert template.placeholders == ("n", "x")
    assert template.unknown == ("b", "a")
    assert params.compile_script("v", "echo {x}", SCHEMA).parts[1].form == "word"


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


def test_no_value_is_ever_pasted_into_the_script_but_an_int_in_arithmetic():
    schema = params.parse_schema("v", {"x": "str", "pw": "secret", "n": "int"})
    script = ("printf '%s' {x} \"{pw}\" '{x}' $'{pw}' $(( {n} + 1 ))\ncat <<E\n{pw} {x}\nE\n"
              "# {pw}\nA={pw}; [[ {x} == {pw} ]]; case {x} in {pw}) :;; esac")
    rendered = params.render(params.compile_script("v", script, schema),
                             {"x": "VALUE-X", "pw": "hunter2", "n": 41}, schema)
    assert "VALUE-X" not in rendered.script and "hunter2" not in rendered.script
    assert "41" in rendered.script and rendered.shown == rendered.script


# --- hypothesis: arbitrary values in more contexts, and arbitrary scripts around them ---------------

@settings(max_examples=40, deadline=None)
@given(HOSTILE_TEXT)
def test_arbitrary_text_in_more_contexts(tmp_path_factory, value):
    cwd = tmp_path_factory.mktemp("h")
    script = ("printf '%s|' $'{x}' \"$(printf '%s' {x})\" \"$(printf '%s' \"{x}\")\" > out\n"
              "cat <<E >> out\n{x}\nE\ncat <<'Q' >> out\nquoted\nQ")
    got, result, rendered = run(script, {"x": value}, cwd)
    chomped = value.rstrip("\n")
    assert got == f"{value}|{chomped}|{chomped}|{value}\nquoted\n".encode(), result.stderr
    assert not (cwd / "PWNED").exists()


FRAGMENTS = ["'", '"', "$(", ")", "`", "${", "}", "{x}", "{x}", "{x}", "$'", "\\", "\\\\", "#", " ", "\n",
             ";", "(", "((", "))", "<<EOF", "<<'EOF'", "<<-E", "EOF", "E", "\t", "$((", "$[", "]", "[",
             "case ", "esac ", "a", "$", "{{", "}}", "<<<", "|", ":", "=", "$#", "<(", "\"$(",
             "cat <<'Q'\n{x}\nQ\n", "read ", "a=", "[[ ", " ]]", "-v ", "for ", " in ", "do ", "done",
             "eval ", "printf ", "declare ", "-i ", "let ", "echo ", "${a[", "<<E$'OF'", "EOF\n"]
ATTACKS = ["$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", "\"; touch PWNED; \"", "\ntouch PWNED\n",
           "EOF\ntouch PWNED", "Q\ntouch PWNED", "a[$(touch PWNED)]", "EOF) ; touch PWNED", "Q) ; touch PWNED",
           "-v", "x[$(touch PWNED)]", "touch PWNED"]


@settings(max_examples=80, deadline=None)
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

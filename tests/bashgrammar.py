"""Random bash scripts with ``{x}`` (str), ``{n}`` (int) and ``{s}`` (secret) placeholders, from a
grammar of bash constructs, for the differential fuzzer of substitution (``fuzz_oracle``).

``generate(seed)`` is deterministic per seed. A ``Script`` is a list of tokens (literal bash text
or a placeholder) so that a failing case can be shrunk token by token; ``Script.template`` is the
text ``params.compile_script`` reads (literal braces doubled only where the engine would take
them for a placeholder). Some placeholders are *probed*: the generator emitted them in a data
position whose result a statement writes to ``probe_<id>``, and ``Script.expected`` says what
that file must hold for given values (see ``expect``).

Variables the generator assigns values to (``v1``, ``v2``, ``arr``, ``m``...) are only ever read
in data positions: what a script does on purpose with its own variables (``eval "$v"``,
``$(( v ))``, ``${!ref}``) is not the engine's to police, so the grammar never emits such flows.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

#: placeholder name -> input type
NAMES = {"x": "str", "n": "int", "s": "secret"}
SCHEMA_SPEC = {"x": "str", "n": "int", "s": {"type": "secret", "required": False}}

DELIMS = ("EOF", "END", "E", "DATA", "_X1", "EOF2")
#: spellings of delimiter D in a here-document operator; all but the first are quoted
_DELIM_FORMS = ("{d}", "'{d}'", '"{d}"', "\\{d}", "{h}'{t}'", "$'{d}'", '$"{d}"', "{h}\\{t}",
                '{h}"{t}"', "{h}$'{t}'")


@dataclass(frozen=True)
class Tok:
    text: str  #: bash text, or the input name of a placeholder
    ph: bool = False
    group: int = -1  #: the probe this token belongs to (kept when shrinking its mismatch)


@dataclass
class Script:
    seed: object
    tokens: list
    probes: dict = field(default_factory=dict)  #: probe id -> expectation tree (see ``expect``)
    delims: tuple = ()  #: here-document delimiters used

    @property
    def template(self) -> str:
        return template_of(self.tokens)

    def expected(self, probe: int, texts: dict) -> str:
        return expect(self.probes[probe], texts)

    def without(self, drop: set) -> "Script":
        """This script without the tokens at the indexes in ``drop``; probes whose tokens are
        all gone are dropped too."""
        tokens = [t for i, t in enumerate(self.tokens) if i not in drop]
        groups = {t.group for t in tokens}
        return Script(self.seed, tokens, {p: e for p, e in self.probes.items() if p in groups},
                      self.delims)


def from_template(template: str, probes: dict | None = None, seed: object = "fixed") -> Script:
    """A script written by hand in the engine's template syntax (``{{``/``}}`` literal braces);
    ``probes`` as in ``Script.probes``, their tokens in group 0."""
    tokens = []
    for k, part in enumerate(re.split(r"(\{\{|\}\}|(?<!\$)\{(?:x|n|s)\})", template)):
        if k % 2 == 0:
            tokens += [Tok(t, False, 0) for t in re.findall(r"\s+|[^\s]+", part)]
        elif part in ("{{", "}}"):
            tokens.append(Tok(part[0], False, 0))
        else:
            tokens.append(Tok(part[1:-1], True, 0))
    return Script(seed, tokens, dict(probes or {}))


def template_of(tokens) -> str:
    """The engine's template for these tokens: a literal ``{`` is doubled when the engine would
    read it as the start of ``{{`` or of a placeholder, a literal ``}`` when it touches another
    literal ``}``; everything else is written as is (``{a,b}``, ``awk '{print}'``)."""
    out = []
    for i, tok in enumerate(tokens):
        if tok.ph:
            out.append("{" + tok.text + "}")
            continue
        text = tok.text
        nxt = _next_text(tokens, i)
        prev_brace = bool(out) and out[-1].endswith("}") and not tokens[i - 1].ph
        chars = []
        for j, c in enumerate(text):
            rest = text[j + 1:] + nxt
            if c == "{" and (rest.startswith("{") or re.match(r"(?:x|n|s)\}", rest)):
                c = "{{"
            elif c == "}" and (rest.startswith("}") or (j == 0 and prev_brace)
                               or (j > 0 and text[j - 1] == "}")):
                c = "}}"
            chars.append(c)
        out.append("".join(chars))
    return "".join(out)


def _next_text(tokens, i: int) -> str:
    """What follows token i in the template, enough to decide on escaping (a placeholder counts
    as its opening brace)."""
    text = ""
    for tok in tokens[i + 1:]:
        if tok.ph:
            return text + "{"
        text += tok.text
        if len(text) >= 3:
            break
    return text


# --- expectations of probes ---------------------------------------------------------------------
# A tree: a str is literal; ("v", name) the value's text; ("cat", *trees); ("chomp", tree): trailing
# newlines removed (command substitution); ("line1", tree): up to the first newline (read);
# ("tabs", tree): leading tabs removed from every line (a value pasted into a <<- document).

def expect(tree, texts: dict) -> str:
    if isinstance(tree, str):
        return tree
    op, *args = tree
    if op == "v":
        return texts[args[0]]
    inner = "".join(expect(a, texts) for a in args)
    if op == "cat":
        return inner
    if op == "chomp":
        return inner.rstrip("\n")
    if op == "line1":
        return inner.split("\n", 1)[0]
    if op == "tabs":
        return "\n".join(line.lstrip("\t") for line in inner.split("\n"))
    raise ValueError(op)


# Probe forms: one bash word holding placeholder § in a data position, and what it expands to
# (§ there is the value). "chomp": the word is a command substitution.
PROBE_FORMS = [
    ("§", "§", ""), ('"§"', "§", ""), ("'§'", "§", ""), ("pre§post", "pre§post", ""),
    ('"a b§c"', "a b§c", ""), ("'a\"§\"b'", 'a"§"b', ""), ('"a\'§\'b"', "a'§'b", ""),
    ("$'§'", "§", ""), ("$'\\t§'", "\t§", ""), ("$'\\''§", "'§", ""), ('$"§"', "§", ""),
    ("\\\\§", "\\§", ""), ('"\\\\§"', "\\§", ""), ('"\\$a§"', "$a§", ""), ("a\"§\"'§'$'§'", "a§§§", ""),
    ("§§", "§§", ""), ('"§"§', "§§", ""), ("a#§", "a#§", ""), ("esac§", "esac§", ""),
    ("\"$(printf '%s' §)\"", "§", "chomp"), ("\"$(printf '%s' \"§\")\"", "§", "chomp"),
    ("\"`printf '%s' §`\"", "§", "chomp"), ("\"$(printf '%s' \"$(printf '%s' '§')\")\"", "§", "chomp"),
    ("\"$( (printf '%s' §) )\"", "§", "chomp"), ("\"$(case a in a) printf '%s' §;; esac)\"", "§", "chomp"),
    ("\"$(cat <<'PD'\n§\nPD\n)\"", "§", "chomp"), ("\"$(cat <<PD\n§\nPD\n)\"", "§", "chomp"),
    ("${unset_v-§}", "§", ""), ('"${unset_v:-§}"', "§", ""), ("${unset_v:-\"§\"}", "§", ""),
    ('"${#}"§', "0§", ""), ('"$((1+2))"§', "3§", ""), ("a\\\n§", "a§", ""), ('"a\\\n§"', "a§", ""),
]
#: probe statements around a word W (its expansion E): what probe_<id> holds
_PROBE_STMTS = [
    ("printf '%s' W > P", ("E",)), ("printf %s W >P", ("E",)), ("printf '%s' W | cat > P", ("E",)),
    ("pv=W; printf '%s' \"$pv\" > P", ("E",)), ("pa=(W); printf '%s' \"${pa[0]}\" > P", ("E",)),
    ("pa=([3]=W); printf '%s' \"${pa[3]}\" > P", ("E",)),
    ("IFS= read -r pv <<< W || :; printf '%s' \"$pv\" > P", ("line1", "E")),
    ("cat <<< W > P", ("E", "\n")), ("printf -v pv '%s' W; printf '%s' \"$pv\" > P", ("E",)),
    ("pf() { printf '%s' \"$1\" > P; }; pf W", ("E",)),
    ("sh -c 'printf \"%s\" \"$1\" > P' _ W", ("E",)), ("cat <(printf '%s' W) > P", ("E",)),
    ("local_v() { local pv=W; printf '%s' \"$pv\" > P; }; local_v", ("E",)),
    ("export pv=W; printf '%s' \"$pv\" > P", ("E",)),
    ("declare -A pm=([k]=W); printf '%s' \"${pm[k]}\" > P", ("E",)),
    ("pv=`printf '%s' W`; printf '%s' \"$pv\" > P", ("chomp", "E")),
    ("printf '%s' W > P # {x} in a comment", ("E",)),
]
#: lines of a probed here-document: the line, what it expands to in an unquoted document, and
#: whether the value is in a command substitution there (such lines only go in unquoted ones)
_HEREDOC_PROBES = [("pre § post", "pre § post", False), ("§", "§", False), ("'§'", "'§'", False),
                   ('"§"', '"§"', False), ("§ and §", "§ and §", False), ("# §", "# §", False),
                   ("a $(printf '%s' §) b", "a § b", True), ("<$(cat <<IN\n§\nIN\n)>", "<§>", True),
                   ("`printf '%s' §`", "§", True)]
_BODY_PROBE = ["pre § post", "§", "'§'", '"§"', "a $(printf '%s' §) b", "<$(cat <<IN\n§\nIN\n)>",
               "§§", "# §", "`printf '%s' §`"]


# --- the generator ------------------------------------------------------------------------------

_SIMPLE = [
    "printf '%s\\n' «W» «W» >_o", ": «W» «W»", "echo «W» >_o", "true «W»",
    "printf '%s' «W» | cat >_o", "cat </dev/null", "printf '%s' «W» >_o 2>&1",
    "echo «W» &>_o", "v1=«W» : «W»",
]
_STATEMENTS = [  # (weight, template)
    (6, "«C»"), (4, "«C» || :"), (3, "«V»=«W»"), (2, "«V»+=«W»"), (2, "«V»=«W» «V»=«W»"),
    (2, "arr=(«W» «W»)"), (2, "arr+=(«W»)"), (2, "arr=([«A»]=«W» [«A»]=«W»)"),
    (2, "declare -a arr=([«A»]=«W»)"), (2, "declare -A m=([«K»]=«W»)"), (1, "declare -A m; m[«K»]=«W»"),
    (1, "m[«K»]=«W»"), (2, "arr[«A»]=«W»"), (2, "declare -i «I»=«A»"), (1, "declare -i iv; iv=«X»"),
    (1, "local -i iv=«X» 2>_e || :"), (2, "let «A» || :"), (1, "let \"«A»\" «A» || :"),
    (1, "typeset «N» || :"), (1, "export «N»=«W» || :"), (1, "readonly «N»=1 || :"),
    (2, "declare «N»=«W» || :"), (1, "local «N» 2>_e || :"), (1, "unset «N» || :"),
    (1, "unset -v «N» || :"), (2, "printf -v «N» '%s' «W» || :"), (2, "read -r «N» <<< «W» || :"),
    (1, "read -r v2 «N» </dev/null || :"), (1, "mapfile -t «N» </dev/null || :"),
    (2, "[[ -v «N» ]] || :"), (1, "test -v «N» || :"), (1, "[ -v «N» ] || :"),
    (1, "declare -n nr=«N» 2>_e && : \"${nr-}\" || :"), (1, "getopts ab «N» «X» || :"),
    (1, "for «N» in a b; do «C»; done 2>_e || :"), (1, "select «N» in a; do break; done </dev/null || :"),
    (2, "[[ «X» == «X» ]] || :"), (2, "[[ «X» =~ «RE» ]] || :"), (2, "[[ «AW» -eq «AW» ]] || :"),
    (1, "[[ «A» -lt «A» ]] || :"), (1, "[ «X» = «X» ] || :"), (1, "[ «AW» -eq 1 ] 2>_e || :"),
    (1, "test «AW» -gt 0 2>_e || :"), (3, "(( «A» )) || :"), (2, "((«A»)) || :"),
    (2, ": $(( «A» ))"), (2, ": $((«A»))"), (1, ": $[«A»]"), (1, ": \"$[ «A» ]\""),
    (2, "echo \"${arr[«A»]}\" >_o"), (1, "echo ${arr[«A»]:-«W»} >_o"),
    (1, ": \"${#arr[«A»]}\""), (2, ": \"${s6:«A»:«A»}\""), (1, ": ${s6:«A»}"), (1, ": ${s6: «A»}"),
    (1, ": \"${arr[0]:«A»}\""), (1, ": \"${arr[@]:«A»:1}\""), (1, ": ${s6:(«A»)}"),
    (2, "for((i=0;i<(«A»)&&i<3;i++)); do «C»; done"), (2, "for (( i = 0 ; i < («A») && i < 3 ; i++ )); do «S»done"),
    (1, "if «C»; then((«A»)) || :; fi"), (1, "if false; then :; else((«A»)) || :; fi"),
    (1, "k=0; while(( («A») && k++ < 2 )); do «C»; done"), (1, "k=0; until((k++ > 2)) || ((k >= («A»))); do «C»; done"),
    (1, "for i in 1; do((«A»)) || :; done"), (1, "time((«A»)) 2>_e || :"),
    (2, "x1=$((echo «W»);(echo «W»))"), (1, "x1=$((echo ')');echo «W»)"), (1, "x1=$( (echo «W») )"),
    (1, "x1=$((«A»))"), (1, "x1=\"$((echo «W») | cat)\""),
    (2, "eval «X» 2>_e || :"), (1, "eval \"echo «DC»\" >_o 2>&1 || :"),
    (1, "eval -- «X» 2>_e || :"), (1, "command eval «X» 2>_e || :"),
    (1, "builtin eval «X» 2>_e || :"), (1, "bash -c «X» 2>_e || :"),
    (1, "sh -c «X» _ «X» 2>_e || :"), (1, "sh -c 'printf %s \"$1\"' _ «X» >_o"),
    (1, "bash -c \"echo «DC»\" >_o 2>&1 || :"), (1, "source /dev/null «X»"),
    (1, ". «X» 2>_e || :"), (1, "source <(printf '%s\\n' «X») 2>_e || :"),
    (1, "trap «X» EXIT || :"), (1, "trap -- «X» ERR; trap - ERR"),
    (2, "x1=\"$(«S»)\""), (2, "x1=$(«S»)"), (2, "x1=`«C»`"), (1, "x1=\"`«C»`\""),
    (1, "x1=$(echo \"$(«C»)\")"), (1, "x1=$(echo `«C»`)"), (1, "x1=`echo \\`echo «W»\\``"),
    (1, "x1=\"$(echo \"$(echo \"$(«C»)\")\")\""),
    (2, "case «W» in «T») «S»;; «T»|«T») «C» ;& *) «C»;; esac"), (1, "case «W» in («T») «S»;;& *) :;; esac"),
    (1, "case «W» in\n«T») «C»\n;;\nesac"), (1, "x1=$(case «W» in «T») «C»;; esac)"),
    (1, "shopt -s extglob"), (1, "[[ «X» == @(«T»|«T») ]] || :"), (1, "[[ «X» == !(«T») ]] || :"),
    (2, "«F»() { «S»}; «F» «W»"), (1, "function «F» { «S»}; «F»"), (1, "«F»() ( «S»); «F» «W»"),
    (2, "{ «S»}"), (2, "( «S»)"), (2, "«C» | «C»"), (1, "«C» |& cat >_o"), (1, "! «C»"),
    (2, "«C» && «C» || «C»"), (2, "if «C»; then «S»elif «C»; then «S»else «S»fi"),
    (1, "while false; do «S»done"), (1, "cat <(«C») >_o"), (1, "«C» > >(cat >_o)"),
    (1, "diff <(echo «W») <(echo «W») >_o || :"),
    (2, "# comment «W» «W»«NL»"), (2, "«C» # comment «W»«NL»"), (1, "echo a#«W» >_o"),
    (2, "echo «W» \\\n «W» >_o"), (1, "ec\\\nho «W» >_o"), (1, "echo \"a\\\n«D»\" >_o"),
    (1, "( set -- «W» «W»; shift; printf '%s' \"$1\" >_o )"), (1, "«P» «W» 2>_e || :"),
    (1, "echo {a,b}«W» '{print $1}' >_o"), (1, "«V»=$'«DA»'"), (1, "«V»=\"«D»\""),
    (1, "«V»='«Q»'"), (1, "«V»=$\"«D»\""),
    (5, "cat «H» >_o"), (2, "cat «H» «H» >_o"), (2, "cat «H»; cat «H» >_o"),
    (1, "cat - /dev/fd/3 «H» 3«H» >_o"), (2, "x1=$(cat «H»«NL»)"), (1, "x1=\"$(cat «H»«NL»)\""),
    (1, "x1=`cat «H»«NL»`"), (1, "read -r v2 «H» || :"), (1, "while IFS= read -r v2; do «C»; done «H»"),
    (1, "mapfile -t arr «H»"), (1, "bash «H» >_o 2>&1 || :"), (1, "source /dev/stdin «H» 2>_e || :"),
    (1, "cat «H» | cat >_o"), (1, "f_h() { cat «H»«NL»}; f_h >_o"),
    (6, "«PROBE»"),
]
_WEIGHTS = [w for w, _ in _STATEMENTS]
_WORDS = ["a", "b1", "-n", "--", "x=y", "*.none", "~", "a\\ b", "'q'", '"d"', "$v1", "${v1}", "$1", "$#",
          "{a,b}", "\\$", "\"$v2\"", "'$v1'", "$'\\x41'", "${v1:-d}", "\"${arr[@]}\"", "\"$(echo c)\"",
          "`echo t`", "$((1+2))", "\"{who}\"", "${x}", "}", "{", "]]", "#", "a#b", "''", '""']
#: placeholder forms for any word (besides PROBE_FORMS): some are refused, some are odd
_ODD_FORMS = ["\\§", "'\\§'", "$'\\§'", '"\\§"', "${v1:-'§'}", "\"${v1:-'§'}\"", "${v1#§}", "${v1/§/r}",
              "\"${v1//§}\"", "${!§}", "${§}", "$§", "{§}", "§=v", "\"${arr[§]}\"", "${s6:§}",
              "$((§))", "$[§]", "\"$((§+1))\"", "`echo §`", "\"`echo \\\"§\\\"`\"", "$(echo §)",
              "\"${v1:+§}\"", "\"${v1/a/§}\"", "${v1@Q}§", "@(§)", "[§]", "a[§]", "'§'\\'", "\\'§"]
_ARITH = ["§", "§+1", " § ", "§*2", "(§)", "i", "1", "0", "i+§", "k", "§%3", "-§", "a[§]", "$((§))", "${#v1}",
          "i=§", "i+=§", "§ ? 1 : 0", "$i", "${i}", "1+ §", "§<<1"]
_NAMES_LIT = ["v2", "arr[1]", "m[k]", "pv", "_u"]
_REGEX = ["^a.*$", "a|b", "[[:alpha:]]+", "'a.b'", "\"a b\"", "\\.", "(a)(b)?"]
_PATTERNS = ["a", "b|c", "*", "?", "[ab]*", "?(x)", "a\\)", "'x)'", "\"y\""]
_DQ_PARTS = ["text ", "$v1", "${v1}", "$(echo in)", "`echo bt`", "${v1:-w}", "\\$x", "\\\\", "\\\"", "'",
             "$((1+2))", "${#arr[@]}", "$(printf '%s' \"in q\")", "#", "}", "{"]


class _Gen:
    def __init__(self, seed) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.tokens: list[Tok] = []
        self.pending: list = []  # here-document bodies to write after the next newline
        self.probes: dict[int, object] = {}
        self.delims: set[str] = set()
        self.group = -1
        self.depth = 0
        self.funcs = 0

    # -- output --
    def lit(self, text: str) -> None:
        for part in re.findall(r"\s+|[^\s]+", text):
            self.tokens.append(Tok(part, False, self.group))

    def ph(self, name: str) -> None:
        self.tokens.append(Tok(name, True, self.group))

    def ends_line(self) -> bool:
        return bool(self.tokens) and self.tokens[-1].text.endswith("\n") and not self.tokens[-1].ph

    def newline(self) -> None:
        self.lit("\n")
        bodies, self.pending = self.pending, []
        for body in bodies:
            body()

    def sep(self) -> None:
        """End a statement: a newline (which starts pending here-document bodies) or '; '."""
        if self.ends_line():
            return
        if self.pending or self.rng.random() < 0.5:
            self.newline()
        else:
            self.lit("; ")

    # -- placeholders --
    def name(self, arith: bool = False) -> str:
        r = self.rng.random()
        if arith:
            return "n" if r < 0.8 else ("x" if r < 0.93 else "s")
        return "x" if r < 0.6 else ("s" if r < 0.85 else "n")

    def form(self, form: str, name: str) -> None:
        """Emit ``form`` with every § a placeholder for ``name``."""
        for k, part in enumerate(form.split("§")):
            if k:
                self.ph(name)
            if part:
                self.lit(part)

    # -- slots --
    def expand(self, template: str) -> None:
        for part in re.split(r"(«[A-Z]+»)", template):
            if not part:
                continue
            if not part.startswith("«"):
                self.lit(part)
                continue
            getattr(self, "slot_" + part[1:-1])()

    def slot_W(self) -> None:  # a data word: literal, a variable, or a placeholder form
        r = self.rng.random()
        if r < 0.35:
            self.lit(self.rng.choice(_WORDS))
        elif r < 0.8:
            self.form(self.rng.choice(PROBE_FORMS)[0], self.name())
        else:
            self.form(self.rng.choice(_ODD_FORMS), self.name())

    def slot_X(self) -> None:  # a word that reads no variable the script assigned
        r = self.rng.random()
        if r < 0.25:
            self.lit(self.rng.choice(["a", "'echo hi'", "-n", ":", "\"x y\"", "$'\\n'"]))
        elif r < 0.85:
            self.form(self.rng.choice(PROBE_FORMS)[0], self.name())
        else:
            self.form(self.rng.choice(_ODD_FORMS[:16]), self.name())

    def slot_P(self) -> None:
        self.form(self.rng.choice(PROBE_FORMS)[0], self.name())

    def slot_K(self) -> None:  # an associative key
        if self.rng.random() < 0.3:
            self.lit(self.rng.choice(["k", "'a b'", "\"k2\"", "$1"]))
        else:
            self.form(self.rng.choice(["§", '"§"', "'§'", "k§", "$'§'"]), self.name())

    def slot_N(self) -> None:  # a name position
        r = self.rng.random()
        if r < 0.3:
            self.lit(self.rng.choice(_NAMES_LIT))
        else:
            self.form(self.rng.choice(["§", '"§"', "'§'", "a[§]", "\"a[§]\"", "§[0]", "v§", "m[§]", "$'§'"]),
                      self.name(arith=self.rng.random() < 0.4))

    def slot_A(self) -> None:  # an arithmetic expression
        parts = [self.rng.choice(_ARITH) for _ in range(self.rng.choice((1, 1, 2)))]
        ops = [self.rng.choice(["+", " + ", "*", " - ", "&&", " || ", ","]) for _ in parts[1:]]
        for k, part in enumerate(parts):
            if k:
                self.lit(ops[k - 1])
            self.form(part, self.name(arith=True))

    def slot_AW(self) -> None:  # an arithmetic operand of [[ -eq ]], test, let
        if self.rng.random() < 0.3:
            self.lit(self.rng.choice(["1", "0", "i", "$i"]))
        else:
            self.form(self.rng.choice(["§", '"§"', "'§'", "$'§'", "§+0", "a[§]"]), self.name(arith=True))

    def slot_I(self) -> None:
        self.lit(self.rng.choice(["i", "j", "k"]))

    def slot_V(self) -> None:
        self.lit(self.rng.choice(["v1", "v2"]))

    def slot_F(self) -> None:
        self.funcs += 1
        self.lit(f"f{self.funcs}")

    def slot_RE(self) -> None:
        if self.rng.random() < 0.5:
            self.lit(self.rng.choice(_REGEX))
        else:
            self.form(self.rng.choice(["§", '"§"', "^§$", "'§'", "(§)+", "^\"§\""]), self.name())

    def slot_T(self) -> None:  # a case or extglob pattern
        if self.rng.random() < 0.5:
            self.lit(self.rng.choice(_PATTERNS))
        else:
            self.form(self.rng.choice(["§", '"§"', "'§'", "§*", "[§]", "*§*"]), self.name())

    def slot_D(self, parts=None) -> None:  # the inside of double quotes
        for _ in range(self.rng.randint(1, 3)):
            if self.rng.random() < 0.5:
                self.lit(self.rng.choice(parts or _DQ_PARTS))
            else:
                self.form(self.rng.choice(["§", "a§b", "$(echo §)", "${v1:-§}", "'§'", "\\\\§", "${arr[§]}",
                                           "$((§))", "`echo §`", "$(echo \"§\")", "\\§"]), self.name())

    def slot_DC(self) -> None:  # the inside of double quotes that become code (eval "…", bash -c "…")
        # never a variable the script may have filled with a value: running that is the script's
        # own business (v1={x}; eval "$v1"), not the engine's
        self.slot_D([p for p in _DQ_PARTS if not re.search(r"\$\{?[#!]?(v1|arr|m)\b", p)])

    def slot_DA(self) -> None:  # the inside of $'...'
        self.lit(self.rng.choice(["a", "\\n", "\\'", "\\\\", "\\x41", "b "]))
        self.form(self.rng.choice(["§", "§\\t", "'§"[1:], "\\'§"]), self.name())

    def slot_Q(self) -> None:
        self.form(self.rng.choice(["§", "a §", "\"§\"", "$§", "`§`", "\\§"]), self.name())

    def slot_C(self) -> None:
        self.expand(self.rng.choice(_SIMPLE))

    def slot_S(self) -> None:  # one to three statements, each ended by sep()
        self.depth += 1
        for _ in range(self.rng.randint(1, 2 if self.depth > 1 else 3)):
            self.statement()
        self.depth -= 1

    def slot_NL(self) -> None:
        self.newline()

    def slot_PROBE(self) -> None:
        self.probe()

    def slot_H(self) -> None:  # a here-document operator; its body follows the next newline
        d = self.rng.choice(DELIMS)
        self.delims.add(d)
        quoted = self.rng.random() < 0.45
        spelled = _spell(self.rng, d, quoted)
        tabs = self.rng.random() < 0.3
        self.lit(("<<-" if tabs else "<<") + self.rng.choice(["", " "]) + spelled)
        self.pending.append(lambda: self.body(d, quoted, tabs))

    # -- here-document bodies --
    def body(self, delim: str, quoted: bool, tabs: bool) -> None:
        for _ in range(self.rng.randint(0, 3)):
            lead = "\t" if tabs and self.rng.random() < 0.5 else ""
            r = self.rng.random()
            if lead:
                self.lit(lead)
            if r < 0.25:
                self.lit(self.rng.choice(["plain text", "it's \"here\"", "a\\b", "$v1 ${v1:-w}", "\\$HOME",
                                          "#!", "{a,b}", "'", "`echo bt`", "$(echo sub)", delim + "X",
                                          " " + delim, delim + " ", delim + ";", delim[:-1] or "Q"]))
            elif r < 0.35 and self.depth < 3:
                self.depth += 1
                self.lit("$(cat ")
                self.slot_H()
                self.newline()
                self.lit(")")
                self.depth -= 1
            elif r < 0.42 and self.depth < 3:
                self.depth += 1
                self.lit("$(")
                self.slot_S()
                if not self.ends_line():
                    self.newline()
                self.lit(")")
                self.depth -= 1
            else:
                self.form(self.rng.choice(_BODY_PROBE + ["§", "${v1:-§}", "$((§+1))", "${arr[§]}", "\\§", "$§",
                                                         "$(echo §)", "a\\\\§"]),
                          self.name(arith=self.rng.random() < 0.2))
            self.lit("\n")
        self.lit(("\t" if tabs and self.rng.random() < 0.5 else "") + delim + "\n")

    # -- probes --
    def probe(self) -> None:
        pid = len(self.probes)
        outer, self.group = self.group, pid
        name = self.name()
        if self.rng.random() < 0.2:
            tree = self.heredoc_probe(pid, name)
        else:
            form, want, how = self.rng.choice(PROBE_FORMS)
            stmt, shape = self.rng.choice(_PROBE_STMTS)
            word = _expansion(want, name)
            if how == "chomp":
                word = ("chomp", word)
            before, after = stmt.replace("P", f"probe_{pid}").split("W")
            self.lit(before)
            self.form(form, name)
            self.expand(after)
            if shape[0] in ("line1", "chomp"):
                tree = (shape[0], word)
            else:
                tree = ("cat", *(word if s == "E" else s for s in shape))
        self.probes[pid] = tree
        self.group = outer

    def heredoc_probe(self, pid: int, name: str):
        d = self.rng.choice(DELIMS)
        self.delims.add(d)
        quoted = self.rng.random() < 0.4
        tabs = self.rng.random() < 0.3
        self.lit(f"cat <<{'-' if tabs else ''}{_spell(self.rng, d, quoted)} > probe_{pid}")
        line, want, chomp = self.rng.choice([h for h in _HEREDOC_PROBES if not (quoted and h[2])])
        lead = "\t" if tabs else ""

        def body() -> None:
            outer, self.group = self.group, pid
            self.lit(lead)
            self.form(line, name)
            self.lit("\n" + lead + d + "\n")
            self.group = outer
        self.pending.append(body)
        if quoted:  # the value is pasted into the document as text: <<- strips its tabs too
            tree = ("cat", _expansion(line, name), "\n")
            return ("tabs", tree) if tabs else tree
        value = ("chomp", ("v", name)) if chomp else ("v", name)
        parts = []
        for k, piece in enumerate(want.split("§")):
            parts += [value, piece] if k else [piece]
        return ("cat", *parts, "\n")

    # -- statements --
    def statement(self) -> None:
        template = self.rng.choices(_STATEMENTS, _WEIGHTS)[0][1]
        if self.depth > 2 and ("«S»" in template or "«H»" in template):
            template = "«C»"
        if "«PROBE»" in template:
            self.probe()
        else:
            self.expand(template)
        self.sep()


def _spell(rng, d: str, quoted: bool) -> str:
    """How delimiter ``d`` is written after ``<<``."""
    if not quoted:
        return d
    forms = _DELIM_FORMS[1:] if len(d) > 1 else _DELIM_FORMS[1:4] + _DELIM_FORMS[5:7]
    return rng.choice(forms).format(d=d, h=d[:1], t=d[1:])


def _expansion(want: str, name: str):
    parts = []
    for k, piece in enumerate(want.split("§")):
        if k:
            parts.append(("v", name))
        if piece:
            parts.append(piece)
    return ("cat", *parts)


def generate(seed) -> Script:
    """A random script for ``seed`` (anything random.Random accepts)."""
    gen = _Gen(seed)
    if gen.rng.random() < 0.6:
        gen.lit("s6=abcdef; arr=(a b c d); declare -A m=([k]=v); v1=a; i=1\n")
    for _ in range(gen.rng.randint(2, 6)):
        gen.statement()
    if not gen.probes:
        gen.probe()
        gen.sep()
    if gen.pending:
        gen.newline()
    return Script(seed, gen.tokens, gen.probes, tuple(sorted(gen.delims)))

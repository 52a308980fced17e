"""Where each placeholder of a bash script stands, read with certainty or not at all.

Pure: no database, no processes.

``read`` takes a script in which every placeholder has been replaced by one *mark* character
(``mark(k)``) and returns a ``Site`` for each mark: its **form** (how a reference to the value is
written there) and its **role** (what bash does with the value there). The reader is
default-deny: it knows a subset of bash 5 exactly, and anything outside that subset — a construct
it does not model, a nesting it cannot follow, an ambiguity bash resolves by context — makes the
whole script ``Unsure``, so that no placeholder is guessed at. Which forms and roles admit which
input types is ``params``' business; this module only reads.

What the subset covers is listed in the README ("Placeholders"). In short: simple commands with
assignments and redirections, pipelines and lists, ``( )`` and ``{ }``, ``if``/``while``/``until``/
``for``/``select``/``case``, functions, ``[[ ]]``, ``(( ))``; words with ``'…'``, ``"…"``,
``$'…'``, ``$"…"``, backslashes, ``$name``, ``${…}``, ``$( )``, ``<( )``, backticks, ``$(( ))``,
``$[ ]``; here-documents whose delimiter is a plain word (quoted or not). Arithmetic is read only
when it holds numbers, names, operators, ``$name`` and parentheses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

#: the bash whose grammar this reader models (checked against 5.2.15): an older one may read a
#: script otherwise, so the engine refuses to run scripts with it (``executor.check_bash``)
BASH_MODELLED = (5, 2)

#: marks are characters from Unicode's supplementary private use area B
MARK_BASE = 0x100000
MARK_LIMIT = 0x10FFFE


def mark(k: int) -> str:
    """The character that stands for placeholder number ``k``."""
    return chr(MARK_BASE + k)


def _mark_of(c: str) -> int | None:
    code = ord(c)
    return code - MARK_BASE if MARK_BASE <= code < MARK_LIMIT else None


# Forms: how a reference is written at a site.
WORD, DQ, SQ, ANSI, HEREDOC, COMMENT, ARITH = "word", "dquote", "squote", "ansi", "heredoc", "comment", "arith"
# Roles: what bash does with a value there. DATA: takes it as data. ARITH: evaluates it as
# arithmetic. NAME: takes it as a variable name (and evaluates a subscript in it). OPTION: may
# take it as an option. CODE: runs it, or runs a command it names. COMMAND: runs it as the
# command. UNKNOWN: an argument of a command the reader cannot name.
DATA, NAME, OPTION, CODE, COMMAND, UNKNOWN = "data", "name", "option", "code", "command", "unknown"
# SPECIAL: assigned to a variable that changes what bash runs or how it reads the script (PATH,
# PS4, BASH_ENV, LC_ALL…). INTEGERS: data, in a script that gives some variable the integer
# attribute, where whatever reaches that variable (by assignment, read, printf -v, for) is
# evaluated as arithmetic.
SPECIAL, INTEGERS = "special", "integers"
# DUPLICATE: the target of '>&' (or '1>&'): bash 5.2 expands it a second time, as code, when it
# is not a file descriptor number.
DUPLICATE = "duplicate"
# Sites where no reference is safe whatever the value.
BACKSLASH, DELIMITER, QHEREDOC, BRACE, BACKTICK = "backslash", "delimiter", "qheredoc", "brace", "backtick"
REFUSALS = frozenset({COMMAND, BACKSLASH, DELIMITER, QHEREDOC, BRACE, BACKTICK})


class Site(NamedTuple):
    """Where one placeholder stands."""

    form: str  #: one of the forms above (meaningful when ``role`` admits a value)
    role: str  #: one of the roles or refusals above
    line: int  #: 1-based line of the script
    construct: str = ""  #: the construct that gives the role, as shown to users: "for ((…))", "read"


class Unsure(Exception):
    """The script holds a construct the reader cannot follow with certainty."""

    def __init__(self, line: int, reason: str, site: tuple[int, Site] | None = None):
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason
        self.site = site  #: a placeholder that stands where the reader cannot go on, if any


_METACHARS = frozenset(" \t\n;&|()<>")
_BLANKS = " \t"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?=|\[)")
_DELIM = re.compile(r"[A-Za-z0-9_]+")
_SPECIAL_PARAM = "@*#?$!-0123456789"
_ARITH_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_ \t\n+-*/%<>=!&|^~?:,#")
_OPERATORS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|", "(", ")")
_REDIRECTS = ("<<<", "<<-", "&>>", "<<", ">>", "<&", ">&", "<>", ">|", "&>", "<", ">")
_RESERVED_KEEP = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{"})
_RESERVED_END = frozenset({"fi", "done", "}", "esac"})
_COND_ARITH = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_COND_NAME = frozenset({"-v", "-R"})
# and set -k, which makes NAME=value anywhere in a command an assignment for it (PATH=…)
_COMPAT = re.compile(r"BASH_COMPAT|POSIXLY_CORRECT|compat[0-9][0-9]"
                     r"|(?:^|[\s;&|(])set\s+(?:-o\s+(?:posix|keyword)|-[A-Za-z]*k)")
_SPECIAL_VARIABLES = re.compile(r"PATH|ENV|BASH\w*|PS[0-9]|PROMPT_COMMAND|SHELLOPTS|POSIXLY_CORRECT|TEXTDOMAIN"
                                r"|TEXTDOMAINDIR|LANG|LC_\w+|LD_\w+|GLOBIGNORE|EXECIGNORE|FUNCNEST|INPUTRC"
                                r"|HISTFILE|MAILPATH|MAIL|CDPATH")


def special_variable(name: str) -> bool:
    """Whether ``name`` is a variable that changes what bash runs or how it reads a script (PATH,
    PS4, BASH_ENV, LC_ALL...): the same list the reader uses for a placeholder's assignments."""
    return _SPECIAL_VARIABLES.fullmatch(name) is not None

# Builtins and programs by what they do with their arguments (default: data, for programs).
_DATA_BUILTINS = frozenset({
    "echo", ":", "true", "false", "cd", "pushd", "popd", "dirs", "pwd", "exit", "return", "shift",
    "break", "continue", "ulimit", "umask", "kill", "disown", "fg", "bg", "times", "logout",
    "suspend", "help", "type", "history", "caller"})
_CODE_COMMANDS = frozenset({
    # builtins that run their arguments, or a command they name, or change how bash reads
    "eval", "source", ".", "exec", "command", "builtin", "trap", "alias", "unalias", "bind", "fc",
    "complete", "compgen", "compopt", "enable", "hash", "jobs", "shopt", "coproc",
    # programs that run a command given in their arguments
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox", "env", "sudo", "doas", "su", "runuser",
    "nohup", "nice", "ionice", "timeout", "xargs", "setsid", "stdbuf", "chroot", "flock",
    "taskset", "strace", "watch", "ssh", "parallel", "nsenter", "unshare"})
_DECLARE = frozenset({"declare", "typeset", "local", "export", "readonly"})
_ATTRIBUTES = frozenset({"declare", "typeset", "local"})  # those that take -i and -n
# getopt-style builtins: (options taking an argument with the argument's role, flags, role of
# the other arguments)
_GETOPT = {
    "printf": ({"v": NAME}, "", DATA),
    "read": ({"a": NAME, "d": DATA, "i": DATA, "n": DATA, "N": DATA, "p": DATA, "t": DATA, "u": DATA},
             "ers", NAME),
    "mapfile": ({"d": DATA, "n": DATA, "O": DATA, "s": DATA, "u": DATA, "C": CODE, "c": DATA}, "t", NAME),
    "unset": ({}, "fvn", NAME),
    "wait": ({"p": NAME}, "fn", DATA),
    "set": ({"o": DATA}, "abefhkmnptuvxBCEHPT", DATA),
}
_GETOPT["readarray"] = _GETOPT["mapfile"]


@dataclass
class _Word:
    start: int
    lit: str | None = ""  #: the word after quote removal when it has no expansion; else None
    quoted: bool = False
    special: bool = False  #: holds an unquoted character bash may expand: { * ? [ ~
    end: int = 0
    marks: list = field(default_factory=list)  #: (mark, form) directly in the word
    assign: str | None = None  #: the variable an assignment word assigns to
    assign_marks: list = field(default_factory=list)  #: marks in the assigned value

    def literal(self, text: str) -> None:
        if self.lit is not None:
            self.lit += text

    @property
    def plain(self) -> str | None:
        """The word's text when it is an unquoted literal (a reserved word, an operator)."""
        return None if self.quoted else self.lit


@dataclass
class _Cmd:
    """The simple command being read: its words, and where its standard input comes from."""

    words: list = field(default_factory=list)
    stdin: list = field(default_factory=list)  #: (start, end) spans of input redirections and bodies
    prefixed: bool = False  #: after an assignment no reserved word is recognised


class _Reader:
    def __init__(self, text: str):
        self.s, self.i, self.n = text, 0, len(text)
        self.sites: dict[int, Site] = {}
        self.levels: list[list] = [[]]  # here-documents waiting for the next newline, per level
        self.nested = 0  # depth of $( ) and <( )
        self.in_brace = False  # directly inside ${ … }
        self.in_quotes = False  # inside "…" or a here-document's text
        self.assigned: list[tuple[int, str, str, int]] = []  # (mark, form, variable, line)
        self.references: set[str] = set()  # names given -n anywhere (an assignment names a variable)
        self.any_reference = False  # -n given to a name the reader cannot see
        self.integer_line = 0  # the first line that gives a variable the integer attribute
        # (spans, role, construct): every mark in the spans takes the role unless it has a
        # stricter one; resolved at the end, when here-document bodies have been read
        self.deferred: list[tuple[list, str, str]] = []
        self.feeds_code: list[str] = []  # per level: why its output may run as code ("" if not)
        self.last_why = ""  # feeds_code of the level read last

    # -- helpers --

    def line(self, i: int | None = None) -> int:
        return self.s.count("\n", 0, self.i if i is None else i) + 1

    def unsure(self, reason: str, i: int | None = None) -> Unsure:
        return Unsure(self.line(i), reason)

    def site(self, k: int, form: str, role: str, construct: str = "", i: int | None = None) -> None:
        if k in self.sites and self.sites[k].role in REFUSALS:
            return  # a refusal found while reading stays: what the command does cannot undo it
        self.sites[k] = Site(form, role, self.line(i), construct)

    def marks_in(self, start: int, end: int) -> list[int]:
        return [k for c in self.s[start:end] if (k := _mark_of(c)) is not None]

    def defer(self, spans: list, role: str, construct: str) -> None:
        if role != DATA:
            self.deferred.append((spans, role, construct))

    def peek(self, k: int = 1) -> str:
        return self.s[self.i:self.i + k]

    def blanks(self) -> None:
        while self.i < self.n:
            if self.s[self.i] in _BLANKS:
                self.i += 1
            elif self.s.startswith("\\\n", self.i):
                self.i += 2
            else:
                return

    # -- command level --

    def read(self) -> dict[int, Site]:
        if (j := self.s.find("expand_aliases")) != -1:
            raise self.unsure("the script may turn on alias expansion, which changes what a word means", j)
        if m := _COMPAT.search(self.s):
            raise self.unsure(f"'{m.group(0).strip()}' changes how bash reads the script", m.start())
        self.commands(frozenset({"eof"}))
        for k, form, variable, line in self.assigned:
            if variable in self.references or self.any_reference:
                self.sites[k] = Site(form, NAME, line, f"{variable}=, a reference (declare -n)")
            elif _SPECIAL_VARIABLES.fullmatch(variable):
                self.sites[k] = Site(form, SPECIAL, line, f"{variable}=")
            else:
                self.sites[k] = Site(form, DATA, line)
        for spans, role, construct in self.deferred:
            for start, end in spans:
                for k in self.marks_in(start, end):
                    site = self.sites.get(k)
                    if site is not None and site.role == DATA:
                        self.sites[k] = site._replace(role=role, construct=construct)
        if self.integer_line:
            for k, site in self.sites.items():
                if site.role == DATA and site.form != COMMENT:
                    self.sites[k] = site._replace(role=INTEGERS, construct=f"declare -i at line {self.integer_line}")
        return self.sites

    def commands(self, closers: frozenset, piped: bool = False) -> str:
        """Read commands up to one of ``closers`` ("eof", ")", ";;", ";&", ";;&", "esac");
        return the closer met (consumed). ``piped``: the level reads a pipe (``… | ( … )``)."""
        start = self.i
        self.feeds_code.append("")
        closer = self._commands(closers, piped)
        why = self.last_why = self.feeds_code.pop()
        if why:  # what this level writes may be read as code: nothing in it is data
            self.defer([(start, self.i)], CODE, why)
        return closer

    def _commands(self, closers: frozenset, piped: bool) -> str:
        cmd, at_command = _Cmd(), True
        stages = 0  # commands before this one in its pipeline
        compounds: list[bool] = []  # open if/while/until/for/case/{ : whether each reads a pipe

        def upstream() -> bool:
            return piped or stages > 0 or any(compounds)

        while True:
            self.blanks()
            if self.i >= self.n:
                self.finish(cmd, upstream())
                if "eof" not in closers:
                    raise self.unsure("the script ends inside a construct that is not closed")
                if any(self.levels):
                    raise self.unsure("a here-document has no body")
                return "eof"
            c = self.s[self.i]
            if c == "#":  # at the start of a word
                self.comment()
                continue
            if c == "\n":
                self.finish(cmd, upstream())
                cmd, at_command, stages = _Cmd(), True, 0
                self.newline()
                continue
            if at_command and not cmd.prefixed and self.s.startswith("((", self.i):
                self.i += 2
                self.arith("))", "(( ))")
                at_command = False
                continue
            op = next((o for o in _OPERATORS if self.s.startswith(o, self.i)), None)
            if op == "&" and self.s.startswith("&>", self.i):
                op = None  # &> and &>> are redirections, not '&' then '>'
            if op is not None:
                self.i += len(op)
                if op in closers:
                    self.finish(cmd, upstream())
                    return op
                if op == "(":
                    if at_command and not cmd.words and not cmd.prefixed:
                        self.commands(frozenset({")"}), upstream())  # a subshell: the same parser
                        if upstream() and self.last_why:  # … | (cat; bash): the pipe runs
                            self.feeds_code[-1] = self.last_why
                        at_command = False
                        continue
                    if len(cmd.words) == 1 and self.function_parens():
                        for k, form in cmd.words[0].marks:
                            self.site(k, form, COMMAND, "a function name", cmd.words[0].start)
                        cmd, at_command = _Cmd(), True
                        continue
                    raise self.unsure("a '(' that is neither a subshell nor a function", self.i - 1)
                if op == ")":
                    raise self.unsure("a ')' that closes nothing", self.i - 1)
                if op in (";;", ";&", ";;&"):
                    raise self.unsure(f"'{op}' outside a case", self.i - 1)
                self.finish(cmd, upstream())
                stages = stages + 1 if op in ("|", "|&") else 0
                cmd, at_command = _Cmd(), True
                continue
            redirect = self.redirect_operator()
            if redirect is not None:
                self.redirect(redirect, cmd)
                continue
            word = self.word(assign_ok=at_command or self.declares(cmd.words))
            if at_command and not cmd.prefixed:
                reserved = word.plain
                if reserved in ("if", "while", "until", "{"):
                    compounds.append(upstream())
                    continue
                if reserved in _RESERVED_KEEP or reserved == "time":
                    if reserved == "time":
                        self.blanks()
                        if self.s.startswith("-p", self.i) and self.s[self.i + 2:self.i + 3] in ("", " ", "\t", "\n"):
                            self.i += 2
                    continue
                if reserved in _RESERVED_END:
                    if reserved == "esac" and "esac" in closers:
                        return "esac"
                    if compounds:
                        compounds.pop()
                    at_command = False
                    continue
                if reserved in ("for", "select"):
                    compounds.append(upstream())
                    self.for_loop(reserved)
                    continue
                if reserved == "case":
                    self.case(upstream())
                    at_command = False
                    continue
                if reserved == "[[":
                    self.cond()
                    at_command = False
                    continue
                if reserved == "function":
                    self.function_keyword()
                    continue
                if reserved == "coproc":
                    raise self.unsure(f"'{reserved}' is not read here", word.start)
            if at_command and word.assign is not None:
                self.assignment(word)
                cmd.prefixed = True
                continue
            at_command = False
            cmd.words.append(word)

    def comment(self) -> None:
        end = self.s.find("\n", self.i)
        end = self.n if end == -1 else end
        for j in range(self.i, end):
            k = _mark_of(self.s[j])
            if k is not None:
                self.site(k, COMMENT, DATA, i=j)
        self.i = end

    def newline(self) -> None:
        """At a newline of this level: read the bodies of its pending here-documents."""
        if any(self.levels[:-1]):
            # bash 5.2 reads a nested level's text before the outer here-document's body
            raise self.unsure("a newline inside a substitution while a here-document waits for its body")
        self.i += 1
        pending, self.levels[-1] = self.levels[-1], []
        for doc in pending:
            self.heredoc_body(*doc)

    def function_parens(self) -> bool:
        self.blanks()
        if self.peek() != ")":
            return False
        self.i += 1
        return True

    def function_keyword(self) -> None:
        self.blanks()
        self.no_comment()
        word = self.word(assign_ok=False)
        for k, form in word.marks:
            self.site(k, form, COMMAND, "function name", word.start)
        self.blanks()
        if self.peek() == "(":
            self.i += 1
            if not self.function_parens():
                raise self.unsure("a function definition without ')'")

    def declares(self, words: list[_Word]) -> bool:
        return bool(words) and words[0].lit in _DECLARE and not words[0].special

    def assignment(self, word: _Word) -> None:
        name = word.assign or ""  # called for assignments only
        for k, form in word.assign_marks:
            self.assigned.append((k, form, name, self.line(word.start)))
        if _SPECIAL_VARIABLES.fullmatch(name):
            self.defer([(word.start, word.end)], SPECIAL, f"{word.assign}=")
        elif word.assign in self.references:
            self.defer([(word.start, word.end)], NAME, f"{word.assign}=, a reference (declare -n)")

    # -- a simple command's words get their roles --

    def finish(self, cmd: _Cmd, upstream: bool) -> None:
        """Give the marks of a simple command their roles."""
        if not cmd.words:
            return
        head, args = cmd.words[0], cmd.words[1:]
        self.roles(head, COMMAND, "")
        name = head.lit if not head.special or head.lit in ("[", "[[") else None
        if name is None and "/" in self.s[head.start:head.end] and not head.marks:
            name = "/"  # a path: never a builtin
        program = None if name is None else name.rpartition("/")[2]
        if name is None:
            for w in args:
                self.roles(w, UNKNOWN, "a command the script does not name")
            self.defer(cmd.stdin, UNKNOWN, "a command the script does not name")
            if upstream:
                self.feeds_code[-1] = "a pipe into a command the script does not name"
            return
        if program in _CODE_COMMANDS:
            for w in args:
                self.roles(w, CODE, name)
            self.defer(cmd.stdin, CODE, name)  # bash <<EOF, sh < file, xargs <<< …
            if upstream:
                self.feeds_code[-1] = f"… | {name}"
        elif name in _DECLARE:
            self.declaration(name, args)
        elif name in _GETOPT:
            self.getopt(name, args)
        elif name in ("test", "["):
            for j, w in enumerate(args):
                prev = args[j - 1] if j else None
                risky = prev is not None and (prev.lit in _COND_NAME or prev.lit is None)
                self.roles(w, NAME if risky else DATA, f"{name} -v")
        elif name == "let":
            for w in args:
                self.roles(w, ARITH, "let")
        elif name == "getopts":
            for j, w in enumerate(args):
                self.roles(w, NAME if j == 1 else DATA, "getopts")
        else:
            for w in args:
                self.roles(w, DATA, name)
        for w in args:  # an assignment word given to a command is a word like any other
            for k, form in w.assign_marks:
                if k not in self.sites:
                    self.site(k, form, DATA, name, w.start)

    def roles(self, word: _Word, role: str, construct: str) -> None:
        """Give a word's marks ``role``; marks inside its substitutions take it too, as what
        they print becomes part of the word."""
        for k, form in word.marks + word.assign_marks:
            self.site(k, form, role, construct, word.start)
        self.defer([(word.start, word.end)], role, construct)

    def getopt(self, name: str, args: list[_Word]) -> None:
        with_arg, flags, rest = _GETOPT[name]
        options, expect = True, None
        positional = 0
        for w in args:
            if expect is not None:
                self.roles(w, *expect)
                expect = None
                continue
            if options:
                if w.lit == "--":
                    options = False
                    continue
                if w.lit is None:
                    self.roles(w, OPTION if rest == DATA else rest, name)  # it may start with "-"
                    continue
                if w.lit.startswith(("-", "+")) and len(w.lit) > 1:
                    for j, letter in enumerate(w.lit[1:], 1):
                        if letter in with_arg:
                            if j == len(w.lit) - 1:  # else its argument is the rest of the word
                                expect = with_arg[letter], f"{name} -{letter}"
                            break
                    continue
                options = False
            if name == "printf" and positional == 0:
                self.roles(w, DATA, "printf's format")
            else:
                self.roles(w, rest, name)
            positional += 1

    def declaration(self, name: str, args: list[_Word]) -> None:
        options, reference = True, False
        for w in args:
            if options and w.lit == "--":
                options = False
                continue
            if options and w.lit is None and w.assign is None:
                self.roles(w, NAME, name)
                continue
            if options and w.lit is not None and w.lit.startswith(("-", "+")) and len(w.lit) > 1:
                if name in _ATTRIBUTES and "i" in w.lit[1:] and w.lit[0] == "-":
                    self.integer_line = self.integer_line or self.line(w.start)
                if name in _ATTRIBUTES and "n" in w.lit[1:] and w.lit[0] == "-":
                    reference = True
                continue
            options = False
            if w.assign is not None:
                if reference:
                    self.references.add(w.assign)
                self.assignment(w)
                for k, form in w.marks:
                    self.site(k, form, NAME, name, w.start)
            else:
                if reference:
                    if w.lit is None:
                        self.any_reference = True
                    else:
                        self.references.add(w.lit)
                self.roles(w, NAME, name)

    # -- words --

    def word(self, assign_ok: bool) -> _Word:
        """Read one word at command level."""
        w = _Word(self.i)
        s = self.s
        if assign_ok and (m := _ASSIGN.match(s, self.i)):
            w.assign = m.group(1)
            w.literal(m.group(0))
            self.i = m.end()
            if m.group(2) == "[":
                w.lit = None
                self.arith("]", "an array subscript")
                if s.startswith("+=", self.i):
                    self.i += 2
                elif s.startswith("=", self.i):
                    self.i += 1
                else:
                    raise self.unsure("a subscript that is not followed by '='", w.start)
            if self.peek() == "(":
                self.i += 1
                w.lit = None
                self.compound(w)
                w.end = self.i
                return w
        while self.i < self.n:
            c = s[self.i]
            if c in _METACHARS:
                if c in "<>" and s.startswith("(", self.i + 1) and self.i == w.start:
                    self.i += 2
                    w.lit = None
                    self.substitution(piped=c == ">")
                    if c == ">" and self.last_why:  # >(bash): what the command writes runs
                        self.feeds_code[-1] = f">( {self.last_why} )"
                    continue
                break
            target = w.assign_marks if w.assign is not None else w.marks
            k = _mark_of(c)
            if k is not None:
                target.append((k, WORD))
                w.lit = None
                self.i += 1
            elif c == "\\":
                nxt = s[self.i + 1:self.i + 2]
                if nxt == "\n":
                    self.i += 2
                    continue
                if nxt and (k := _mark_of(nxt)) is not None:
                    self.site(k, WORD, BACKSLASH, i=self.i)
                    w.lit = None
                w.literal(nxt)
                w.quoted = True
                self.i += 2
            elif c == "'":
                w.quoted = True
                self.single_quotes(w, target, SQ)
            elif c == "$" and s.startswith("$'", self.i):
                w.quoted = True
                self.i += 1
                self.single_quotes(w, target, ANSI)
            elif c == "$" and s.startswith('$"', self.i):
                w.quoted = True
                self.i += 2
                self.double_quotes(w, target)
            elif c == '"':
                w.quoted = True
                self.i += 1
                self.double_quotes(w, target)
            elif c == "$":
                if self.dollar():
                    w.lit = None
                else:
                    w.literal("$")
            elif c == "`":
                self.backtick()
                w.lit = None
            else:
                if c in "{*?[~":
                    w.special = True
                w.literal(c)
                self.i += 1
        w.end = self.i
        return w

    def single_quotes(self, w: _Word, target: list, form: str) -> None:
        start, self.i = self.i, self.i + 1
        while self.i < self.n:
            c = self.s[self.i]
            if c == "'":
                self.i += 1
                return
            k = _mark_of(c)
            if k is not None:
                target.append((k, form))
                w.lit = None
            elif form == ANSI and c == "\\":
                nxt = self.s[self.i + 1:self.i + 2]
                if nxt and (k := _mark_of(nxt)) is not None:
                    self.site(k, form, BACKSLASH, i=self.i)
                w.lit = None  # escapes are not resolved here
                self.i += 2
                continue
            else:
                w.literal(c)
            self.i += 1
        raise self.unsure("a quote that is not closed", start)

    def double_quotes(self, w: _Word, target: list) -> None:
        """After an opening '"': read to the closing one."""
        start = self.i - 1
        if not self.text(w, target, DQ, '"'):
            raise self.unsure("a double quote that is not closed", start)

    def text(self, w: _Word | None, target: list, form: str, close: str | None) -> bool:
        """Read double-quoted or here-document text up to ``close`` (None: the end of the
        text). Return whether ``close`` was found."""
        escapable = "$`\\\n" + ('"' if form == DQ else "")
        saved, self.in_quotes = self.in_quotes, True
        try:
            return self._text(w, target, form, close, escapable)
        finally:
            self.in_quotes = saved

    def _text(self, w, target, form, close, escapable) -> bool:
        s = self.s
        while self.i < self.n:
            c = s[self.i]
            if close is not None and c == close:
                self.i += 1
                return True
            k = _mark_of(c)
            if k is not None:
                if self.in_brace:
                    self.site(k, form, BRACE, i=self.i)
                else:
                    target.append((k, form))
                if w is not None:
                    w.lit = None
                self.i += 1
            elif c == "\\":
                nxt = s[self.i + 1:self.i + 2]
                if nxt and (k := _mark_of(nxt)) is not None:
                    self.site(k, form, BACKSLASH, i=self.i)
                    if w is not None:
                        w.lit = None
                    self.i += 1
                elif nxt in escapable and nxt:
                    if w is not None and nxt != "\n":
                        w.literal(nxt)
                    self.i += 2
                else:
                    if w is not None:
                        w.literal(c)
                    self.i += 1
            elif c == "$":
                if self.dollar():
                    if w is not None:
                        w.lit = None
                else:
                    if w is not None:
                        w.literal("$")
            elif c == "`":
                self.backtick()
                if w is not None:
                    w.lit = None
            else:
                if c == "\n" and self.levels[-1]:
                    raise self.unsure("a quoted newline while a here-document waits for its body")
                if w is not None:
                    w.literal(c)
                self.i += 1
        return close is None

    def compound(self, w: _Word) -> None:
        """After ``name=(``: the elements of a compound assignment, up to ')'."""
        while True:
            while self.i < self.n and self.s[self.i] in " \t\n":
                if self.s[self.i] == "\n" and self.levels[-1]:
                    raise self.unsure("a newline in an array while a here-document waits for its body")
                self.i += 1
            if self.i >= self.n:
                raise self.unsure("an array assignment that is not closed", w.start)
            c = self.s[self.i]
            if c == ")":
                self.i += 1
                return
            if c == "#":
                self.comment()
                continue
            if c in _METACHARS:
                raise self.unsure(f"'{c}' inside an array assignment", self.i)
            if c == "[":
                self.i += 1
                self.arith("]", "an array subscript")
                if not self.s.startswith("=", self.i) and not self.s.startswith("+=", self.i):
                    raise self.unsure("an array element '[…]' without '='", self.i)
                self.i += 1 if self.s[self.i] == "=" else 2
            element = self.word(assign_ok=False)
            for k, form in element.marks:
                w.assign_marks.append((k, form))

    # -- expansions --

    def dollar(self) -> bool:
        """At '$': read an expansion; False if the '$' is a literal character (consumed)."""
        s, i = self.s, self.i
        if s.startswith("$((", i):
            self.i += 3
            self.arith("))", "$(( ))")
        elif s.startswith("$(", i):
            self.i += 2
            self.substitution()
        elif s.startswith("$[", i):
            self.i += 2
            self.arith("]", "$[ ]")
        elif s.startswith("${", i):
            self.i += 2
            self.brace()
        elif i + 1 < self.n and (_NAME.match(s, i + 1) or s[i + 1] in _SPECIAL_PARAM):
            m = _NAME.match(s, i + 1)
            self.i = m.end() if m else i + 2
        else:
            self.i += 1
            return False
        return True

    def substitution(self, piped: bool = False) -> None:
        """After '$(' or '<(' / '>(': a new command level up to ')'; ``piped``: it reads what
        the outer command writes (``>( )``)."""
        saved = self.in_brace, self.in_quotes
        self.in_brace = self.in_quotes = False
        self.levels.append([])
        self.nested += 1
        self.commands(frozenset({")"}), piped)
        if self.levels.pop():
            raise self.unsure("a here-document without a body before its substitution closes")
        self.nested -= 1
        self.in_brace, self.in_quotes = saved

    def backtick(self) -> None:
        """At '`': skip to the closing backtick, as bash finds it first. Placeholders inside are
        refused: the text is read again by bash, after its backslashes are removed."""
        start = self.i
        self.i += 1
        while self.i < self.n:
            c = self.s[self.i]
            if c == "`":
                self.i += 1
                return
            k = _mark_of(c)
            if k is not None:
                self.site(k, WORD, BACKTICK, i=self.i)
            if c == "\\":
                nxt = self.s[self.i + 1:self.i + 2]
                if nxt and (k := _mark_of(nxt)) is not None:
                    self.site(k, WORD, BACKTICK, i=self.i)
                self.i += 1
            self.i += 1
        raise self.unsure("a backtick that is not closed", start)

    def brace(self) -> None:
        """After '${': a parameter expansion, up to its '}'."""
        s, start = self.s, self.i - 2
        if self.i < self.n and s[self.i] in "#!" and s[self.i + 1:self.i + 2] not in ("}", ""):
            self.i += 1
        m = _NAME.match(s, self.i)
        if m:
            self.i = m.end()
        elif self.i < self.n and s[self.i] in _SPECIAL_PARAM:
            self.i += 1
            while s[self.i - 1].isdigit() and self.i < self.n and s[self.i].isdigit():
                self.i += 1
        elif self.i < self.n and (k := _mark_of(s[self.i])) is not None:
            self.site(k, WORD, BRACE, i=self.i)
            self.i += 1
        else:
            raise self.unsure("a '${' that is not a parameter expansion", start)
        if s.startswith("[", self.i):
            self.i += 1
            if s.startswith(("@]", "*]"), self.i):
                self.i += 2
            else:
                self.arith("]", "an array subscript ${a[…]}")
        if s.startswith("}", self.i):
            self.i += 1
            return
        if s.startswith(":", self.i) and s[self.i + 1:self.i + 2] not in ("-", "=", "?", "+"):
            self.i += 1
            if self.arith_until(":}", "a substring ${s:offset:length}") == ":":
                self.arith_until("}", "a substring ${s:offset:length}")
            return
        quoted_context = self.in_quotes
        saved = self.in_brace
        self.in_brace = True
        while True:
            if self.i >= self.n:
                raise self.unsure("a '${' that is not closed", start)
            c = s[self.i]
            if c == "}":
                self.i += 1
                break
            k = _mark_of(c)
            if k is not None:
                self.site(k, WORD, BRACE, i=self.i)
                self.i += 1
            elif c == "\\":
                nxt = s[self.i + 1:self.i + 2]
                if nxt and (k := _mark_of(nxt)) is not None:
                    self.site(k, WORD, BRACE, i=self.i)
                self.i += 2
            elif c in "'\"" and quoted_context:
                # inside double quotes, bash treats quotes in ${…} differently by operator
                raise self.unsure("a quote inside '${…}' within double quotes or a here-document", self.i)
            elif c == "'":
                self.single_quotes(_Word(self.i), [], SQ)
            elif c == '"':
                self.i += 1
                self.double_quotes(_Word(self.i), [])
            elif c == "$":
                self.dollar()
            elif c == "`":
                self.backtick()
            else:
                if c == "\n" and self.levels[-1]:
                    raise self.unsure("a newline in '${…}' while a here-document waits for its body")
                self.i += 1
        self.in_brace = saved

    def arith(self, close: str, construct: str, semicolons: bool = False) -> None:
        """Read arithmetic up to ``close`` ("))" or "]") at depth 0."""
        start = self.i
        depth = 0
        s = self.s
        while self.i < self.n:
            c = s[self.i]
            if close == "))" and c == ")" and depth == 0:
                if s.startswith("))", self.i):
                    self.i += 2
                    return
                # bash reads "$((a) …)" as a command substitution of a subshell
                raise self.unsure(f"'{construct}' that bash may read as a subshell; write '$( (' or '( ('", start)
            if close == "]" and c == "]" and depth == 0:
                self.i += 1
                return
            self.arith_char(c, construct, semicolons)
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
                if depth < 0:
                    raise self.unsure(f"unbalanced parentheses in '{construct}'", start)
        raise self.unsure(f"'{construct}' that is not closed", start)

    def arith_until(self, stops: str, construct: str) -> str:
        """Read arithmetic up to one of ``stops`` at depth 0; return the stop met."""
        start, depth, s = self.i, 0, self.s
        while self.i < self.n:
            c = s[self.i]
            if depth == 0 and c in stops:
                self.i += 1
                return c
            if c == "?":
                raise self.unsure(f"'?' in '{construct}'", self.i)
            self.arith_char(c, construct, False)
            depth += (c in "([") - (c in ")]")
        raise self.unsure(f"'{construct}' that is not closed", start)

    def arith_char(self, c: str, construct: str, semicolons: bool) -> None:
        """Consume one item of arithmetic at self.i."""
        k = _mark_of(c)
        if k is not None:
            self.site(k, ARITH, ARITH, construct)
            self.i += 1
        elif c in _ARITH_CHARS or c in "()[]" or (semicolons and c == ";"):
            if c == "\n" and self.levels[-1]:
                raise self.unsure("a newline in arithmetic while a here-document waits for its body")
            self.i += 1
        elif c == "$":
            s, i = self.s, self.i
            m = _NAME.match(s, i + 1)
            if s.startswith("$((", i):
                self.i += 3
                self.arith("))", construct)
            elif m:
                self.i = m.end()
            elif s.startswith("${", i) and (m := _NAME.match(s, i + 2)) and s.startswith("}", m.end()):
                self.i = m.end() + 1
            elif i + 1 < self.n and s[i + 1] in _SPECIAL_PARAM:
                self.i += 2
            else:
                raise self.unsure(f"an expansion in '{construct}' (only $name and ${{name}} are read there)", i)
        else:
            raise self.unsure(f"'{c}' in '{construct}' (only numbers, names, operators and $name are read there)",
                              self.i)

    # -- redirections and here-documents --

    def redirect_operator(self) -> str | None:
        s, i = self.s, self.i
        j = i
        while j < self.n and s[j].isdigit():
            j += 1
        if j == i and (m := re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}").match(s, i)):
            j = m.end()
        for op in _REDIRECTS:
            if s.startswith(op, j) and not s.startswith(("<(", ">("), j):
                self.i = j + len(op)
                return ">&1" if op == ">&" and s[i:j] in ("", "1") else op
        return None

    def redirect(self, op: str, cmd: _Cmd) -> None:
        self.blanks()
        if op in ("<<", "<<-"):
            self.heredoc_operator(op == "<<-", cmd)
            return
        if (self.i >= self.n or self.s[self.i] == "#"
                or self.s[self.i] in _METACHARS and not self.s.startswith(("<(", ">("), self.i)):
            raise self.unsure(f"'{op}' without a word after it")
        target = self.word(assign_ok=False)
        self.roles(target, DUPLICATE if op == ">&1" else DATA, ">&")
        if op in ("<", "<<<", "<&", "<>"):
            cmd.stdin.append((target.start, target.end))

    def heredoc_operator(self, strip: bool, cmd: _Cmd) -> None:
        s, start = self.s, self.i
        if s.startswith("#", self.i):
            raise self.unsure("'<<' followed by a comment")
        word = self.word(assign_ok=False)
        for k, form in word.marks:
            raise Unsure(self.line(start), "a placeholder in a here-document delimiter",
                         (k, Site(form, DELIMITER, self.line(start))))
        raw = s[start:self.i]
        if _DELIM.fullmatch(raw):
            delim, quoted = raw, False
        elif (len(raw) > 2 and raw[0] == raw[-1] and raw[0] in "'\"" and _DELIM.fullmatch(raw[1:-1])):
            delim, quoted = raw[1:-1], True
        elif raw.startswith("\\") and _DELIM.fullmatch(raw[1:]):
            delim, quoted = raw[1:], True
        else:
            raise self.unsure(f"a here-document delimiter {raw!r} (only a word of letters, digits and '_',"
                              " unquoted or wholly quoted, is read)", start)
        self.levels[-1].append((delim, strip, quoted, start, cmd.stdin))

    def heredoc_body(self, delim: str, strip: bool, quoted: bool, start: int, stdin: list) -> None:
        """At the start of a here-document's body: find its end, then read its text."""
        s = self.s
        j = self.i
        while True:
            if j >= self.n:
                raise self.unsure(f"a here-document (<<{delim}) that is not ended", start)
            end = s.find("\n", j)
            end = self.n if end == -1 else end
            if not quoted:  # bash joins a line that ends in an odd number of backslashes first
                while end < self.n and (len(s[j:end]) - len(s[j:end].rstrip("\\"))) % 2:
                    nxt = s.find("\n", end + 1)
                    end = self.n if nxt == -1 else nxt
            line = s[j:end].replace("\\\n", "") if not quoted else s[j:end]
            if strip:
                line = line.lstrip("\t")
            if line == delim:
                break
            if self.nested and line.startswith(delim):
                # bash 5.2 may end a body inside $( ) at a line that starts with the delimiter
                raise self.unsure(f"a line that starts with the delimiter {delim!r} inside a substitution", j)
            j = end + 1
        body_end, after = j, min(end + 1, self.n)
        stdin.append((self.i, body_end))
        if quoted:
            for p in range(self.i, body_end):
                k = _mark_of(s[p])
                if k is not None:
                    self.site(k, HEREDOC, QHEREDOC, f"<<'{delim}'", p)
        else:
            saved_n, saved_levels = self.n, self.levels
            self.n, self.levels = body_end, [[]]
            target: list = []
            self.text(None, target, HEREDOC, None)
            for k, form in target:
                self.site(k, form, DATA, f"<<{delim}")
            self.n, self.levels = saved_n, saved_levels
        self.i = after

    # -- compound commands --

    def for_loop(self, keyword: str) -> None:
        self.blanks()
        if self.s.startswith("((", self.i):
            self.i += 2
            self.arith("))", "for ((…))", semicolons=True)
            return
        self.no_comment()
        name = self.word(assign_ok=False)
        self.roles(name, NAME, keyword)
        self.skip_newlines()
        if self.s.startswith("in", self.i) and self.s[self.i + 2:self.i + 3] in ("", " ", "\t", "\n", ";"):
            self.i += 2
            while True:
                self.blanks()
                if self.i >= self.n or self.s[self.i] in ";\n":
                    return
                if self.s[self.i] == "#":
                    self.comment()
                    return
                if self.s[self.i] in _METACHARS:
                    raise self.unsure(f"'{self.s[self.i]}' in the words of '{keyword}'")
                word = self.word(assign_ok=False)
                self.roles(word, DATA, keyword)

    def no_comment(self) -> None:
        if self.s.startswith("#", self.i):
            raise self.unsure("a comment where a word was expected")

    def skip_newlines(self) -> None:
        while True:
            self.blanks()
            if self.peek() == "\n":
                self.newline()
            elif self.peek() == "#":
                self.comment()
            else:
                return

    def case(self, piped: bool) -> None:
        self.blanks()
        self.no_comment()
        subject = self.word(assign_ok=False)
        self.roles(subject, DATA, "case")
        self.skip_newlines()
        if not (self.s.startswith("in", self.i) and self.s[self.i + 2:self.i + 3] in ("", " ", "\t", "\n")):
            raise self.unsure("a case without 'in'")
        self.i += 2
        while True:
            self.skip_newlines()
            if self.i >= self.n:
                raise self.unsure("a case that is not closed")
            start = self.i
            first = self.word(assign_ok=False) if self.s[self.i] not in _METACHARS else None
            if first is not None and first.plain == "esac":
                return
            if first is None and self.peek() == "(":
                self.i += 1
            elif first is not None:
                self.roles(first, DATA, "a case pattern")
            while True:  # patterns, separated by '|', up to ')'
                self.blanks()
                c = self.peek()
                if c == ")":
                    self.i += 1
                    break
                if c == "|":
                    self.i += 1
                    continue
                if not c or c in _METACHARS:
                    raise self.unsure("a case pattern that is not closed by ')'", start)
                self.no_comment()
                self.roles(self.word(assign_ok=False), DATA, "a case pattern")
            if self.commands(frozenset({";;", ";&", ";;&", "esac"}), piped) == "esac":
                return

    def cond(self) -> None:
        """After '[[': read to ']]'; operands of -eq… are arithmetic, of -v/-R names."""
        items: list[_Word | str] = []
        while True:
            while self.i < self.n and self.s[self.i] in " \t\n":
                if self.s[self.i] == "\n" and self.levels[-1]:
                    raise self.unsure("a newline in '[[ ]]' while a here-document waits for its body")
                self.i += 1
            if self.i >= self.n:
                raise self.unsure("a '[[' that is not closed")
            op = next((o for o in ("&&", "||", "(", ")", "<", ">") if self.s.startswith(o, self.i)), None)
            if op is not None:
                self.i += len(op)
                items.append(op)
                continue
            if self.s[self.i] in _METACHARS:
                raise self.unsure(f"'{self.s[self.i]}' inside '[[ ]]'")
            self.no_comment()
            if items and isinstance(items[-1], _Word) and items[-1].plain == "=~":
                items.append(self.regex())
                continue
            word = self.word(assign_ok=False)
            if word.plain == "]]":
                break
            items.append(word)
        for j, item in enumerate(items):
            if isinstance(item, str):
                continue
            prev = items[j - 1] if j else None
            nxt = items[j + 1] if j + 1 < len(items) else None
            prev_lit = prev.plain if isinstance(prev, _Word) else None
            next_lit = nxt.plain if isinstance(nxt, _Word) else None
            if prev_lit in _COND_NAME:
                self.roles(item, NAME, f"[[ {prev_lit} ]]")
            elif prev_lit in _COND_ARITH or next_lit in _COND_ARITH:
                self.roles(item, ARITH, f"[[ {prev_lit if prev_lit in _COND_ARITH else next_lit} ]]")
            else:
                self.roles(item, DATA, "[[ ]]")

    def regex(self) -> _Word:
        """The right side of '=~': a word in which '(', ')' and '|' are ordinary."""
        w = _Word(self.i)
        depth = 0
        while self.i < self.n:
            c = self.s[self.i]
            if c in "()":
                depth += 1 if c == "(" else -1
                if depth < 0:
                    raise self.unsure("unbalanced parentheses in a '=~' pattern")
                self.i += 1
                continue
            if c == "|":
                self.i += 1
                continue
            if c in " \t\n" and depth:
                raise self.unsure("a blank inside parentheses of a '=~' pattern")
            if c in _METACHARS:
                break
            part = self.word(assign_ok=False)
            if part.start == self.i:
                break
            w.marks += part.marks
            w.lit = None
        if depth:
            raise self.unsure("unbalanced parentheses in a '=~' pattern")
        w.end = self.i
        return w


def read(text: str) -> dict[int, Site]:
    """The site of every mark in ``text``: mark number -> ``Site``.

    Raises Unsure when any part of the script is outside what the reader knows with certainty.
    """
    return _Reader(text).read()

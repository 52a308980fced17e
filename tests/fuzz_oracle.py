"""The oracle of the substitution fuzzer: for a generated script, the engine either refuses it at
``compile_script``, or a real bash run with every hostile value set never executes a value and
every probe reached holds its value byte for byte. Used by ``scripts/fuzz`` and
``tests/test_fuzz_substitution.py``.

Each hostile value names its own marker file (``PWNED_x3``: value 3 given to ``{x}``); any file
whose name starts with ``PWNED`` in the run's directory is an execution.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import bashgrammar
from pipeline_engine import params
from pipeline_engine.errors import InputSchemaError, ParameterError

SCHEMA = params.parse_schema("fuzz", bashgrammar.SCHEMA_SPEC)
BASH = ("bash", "-e", "-o", "pipefail", "-c")
TIMEOUT = 5.0

#: hostile text values; @ is the value's marker file name
HOSTILE = [
    "$(touch @)", "`touch @`", "'; touch @; '", "\"; touch @; \"", "\ntouch @\n", "a[$(touch @)]",
    "x[`touch @`]", "-v", "-vx[$(touch @)]", "1+a[$(touch @)]", "a[$(touch @)]=1", "$((a[$(touch @)]))",
    "*", "?[a]*", "\\", "\\\\", "a\\", "\\n", "}", "{x}", "}}", "${PE_x}", "", " $(touch @) ",
    "|touch @", "&touch @&", ";touch @;", ")$(touch @)(", "')$(touch @)('", "#$(touch @)",
    "\\$(touch @)", "$'\\x27'$(touch @)", "é€😀\t'", "\"'$(touch @)'\"", "])$(touch @)",
    "]]; touch @; [[ a", "*) touch @;;", "esac; touch @; case a in", "$\"$(touch @)\"", "'\"`touch @`\"'",
]
#: for each here-document delimiter D of a script
HOSTILE_DELIM = ["{d}\ntouch @", "{d}\ntouch @\n{d}", "\t{d}\ntouch @", "{d}) ; touch @", "{d})\ntouch @"]
#: values for {n}: ints (render gives str(int)), and text render must refuse for an int input
INTS = ["0", "1", "3", "7", "42", "-1", "007"]
NOT_INTS = ["1;touch @", "a[$(touch @)]", "$(touch @)", "1 + 1", "0x10", "-v"]
#: harmless values: a probe must deliver them (so a shrunk script still has a working probe)
BENIGN = {"x": "plain", "s": "hush1", "n": "1"}
_DELIM_WORD = re.compile(r"<<-?\s*(?:\$?['\"]|\\)?([A-Za-z_][A-Za-z0-9_]*)")


def value_sets(script, core: bool = False) -> list[dict]:
    """The hostile value sets of a script: one per hostile text (given to {x}, and another one
    to {s}), each with an int for {n}; ``core`` keeps every third text value (a quick run)."""
    texts = list(HOSTILE)
    delims = set(script.delims) | set(_DELIM_WORD.findall(script.template))
    for d in sorted(delims):
        texts += [h.format(d=d) for h in HOSTILE_DELIM]
    if core:
        texts = texts[::3] + texts[len(HOSTILE)::5]
    out = []
    for j, text in enumerate(texts):
        other = texts[(j * 7 + 3) % len(texts)]
        out.append({"x": text.replace("@", f"PWNED_x{j}"), "s": other.replace("@", f"PWNED_s{j}"),
                    "n": INTS[j % len(INTS)]})
    return out


# --- engines: how a template becomes a script and its environment -------------------------------

class Refused(Exception):
    """The engine refuses the script (at compile) or the value set (at render)."""


class Engine:
    """pipeline_engine.params as it is."""

    def compile(self, template: str):
        try:
            return params.compile_script("fuzz", template, SCHEMA)
        except InputSchemaError as exc:
            raise Refused(str(exc)) from None

    def render(self, compiled, values: dict) -> params.Rendered:
        try:
            return params.render(compiled, values, SCHEMA)
        except ParameterError as exc:
            raise Refused(str(exc)) from None


class PastingEngine(Engine):
    """Deliberately unsafe: pastes every value into the script as text (what the oracle must
    catch as executions)."""

    def render(self, compiled, values: dict) -> params.Rendered:
        rendered = super().render(compiled, values)
        pieces = [p if isinstance(p, str) else rendered.env[params.ENV_PREFIX + p.name]
                  for p in compiled.parts]
        return params.Rendered("".join(pieces), "", rendered.env)


class TrimmingEngine(Engine):
    """Deliberately wrong but harmless: the values arrive trimmed of spaces and newlines (what the
    oracle must catch as probe mismatches)."""

    def render(self, compiled, values: dict) -> params.Rendered:
        rendered = super().render(compiled, values)
        return params.Rendered(rendered.script, rendered.shown,
                               {k: v.strip() for k, v in rendered.env.items()})


def _texts(values: dict) -> dict:
    """What each placeholder stands for in bash: ints as written by the engine (str(int))."""
    return {"x": values["x"], "s": values["s"], "n": str(int(values["n"]))}


# --- running ------------------------------------------------------------------------------------

@dataclass
class Failure:
    kind: str  #: execution | mismatch | int-accepted | secret-shown
    script: object  #: bashgrammar.Script
    values: dict
    detail: str = ""
    probe: int = -1
    marker: str = ""


@dataclass
class Outcome:
    refused: bool = False
    reason: str = ""
    runs: int = 0
    skipped: int = 0  #: value sets render refused
    probes_checked: int = 0
    probes_unreached: int = 0
    syntax_errors: int = 0  #: runs where bash reported a syntax error
    timeouts: int = 0
    secret_in_script: int = 0  #: runs whose script text holds the secret (pasted, in argv)
    repairs: int = 0  #: refused lines removed before the script was judged
    probes_void: bool = False  #: the repairs broke a probe: its values are not compared
    script: object = None  #: the script judged (after repairs)
    failures: list = field(default_factory=list)


def run_bash(script: str, env: dict, cwd: str, timeout: float = TIMEOUT) -> tuple[bytes, bool]:
    """Run ``script`` as the engine does, in ``cwd`` with stdin /dev/null; its stderr and whether it
    timed out. Everything it started is killed afterwards."""
    proc = subprocess.Popen(BASH + (script,), cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out, err = True, b""
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return err or b"", timed_out


def _run_one(script, compiled, values: dict, engine: Engine, cwd: str, out: Outcome,
             timeout: float = TIMEOUT, probes: bool = True) -> None:
    try:
        rendered = engine.render(compiled, values)
    except Refused:
        out.skipped += 1
        return
    os.mkdir(cwd)
    err, timed_out = run_bash(rendered.script, rendered.env, cwd, timeout)
    out.runs += 1
    out.timeouts += timed_out
    out.syntax_errors += b"syntax error" in err
    secret = values["s"]
    if len(secret) >= 4 and secret in rendered.script and _pasted(compiled, values, engine, rendered.script):
        out.secret_in_script += 1
    if len(secret) >= 4 and secret in rendered.shown and _pasted(compiled, values, engine, rendered.shown):
        out.failures.append(Failure("secret-shown", script, values, "the secret is in the shown script"))
    names = os.listdir(cwd)
    for marker in sorted(n for n in names if n.startswith("PWNED")):
        out.failures.append(Failure("execution", script, values, f"{marker} was created", marker=marker))
    texts = _texts(values)
    for probe in sorted(script.probes if probes else ()):
        path = os.path.join(cwd, f"probe_{probe}")
        if f"probe_{probe}" not in names:
            out.probes_unreached += 1
            continue
        out.probes_checked += 1
        with open(path, "rb") as f:
            got = f.read()
        want = script.expected(probe, texts).encode("utf-8", "surrogateescape")
        if got != want:
            out.failures.append(Failure("mismatch", script, values, f"probe_{probe}: got {got!r}, want {want!r}",
                                        probe=probe))


def _pasted(compiled, values: dict, engine: Engine, text: str) -> bool:
    """Whether the secret is in ``text`` because it was pasted: the same render with another
    secret no longer holds it (a secret like "${PE_x}" is also the text of a reference)."""
    other = engine.render(compiled, {**values, "s": "\x01sentinel\x01"})
    return values["s"] not in (other.shown if text is not other.script else other.script)


_REFUSED_LINE = re.compile(r"(?:at line |: line )(\d+)")


def check(script, engine: Engine | None = None, core: bool = False, repairs: int = 8) -> Outcome:
    """Judge one generated script (see the module docstring). A default-deny engine refuses most
    scripts for one statement: up to ``repairs`` times, the line the refusal names is removed
    (with every probe it touches) and the rest is judged, so that the other constructs of the
    script are still run."""
    engine = engine or Engine()
    out = Outcome()
    while True:
        try:
            compiled = engine.compile(script.template)
            break
        except Refused as exc:
            m = _REFUSED_LINE.search(str(exc))
            lines = _lines(script)
            if not m or out.repairs >= repairs or not 1 <= int(m.group(1)) <= len(lines) or len(lines) < 2:
                out.refused, out.reason = True, str(exc)
                return out
            drop = set(lines[int(m.group(1)) - 1])
            groups = {script.tokens[j].group for j in drop} - {-1}
            drop |= {j for j, t in enumerate(script.tokens) if t.group in groups}
            script = script.without(drop)
            out.repairs += 1
    out.script = script
    probes = True
    if out.repairs:
        # removing a line may break the script's structure around a probe (a continuation, a
        # quote): its probes count only if they still deliver a harmless value
        benign = Outcome()
        base = tempfile.mkdtemp(prefix="fuzz-")
        try:
            _run_one(script, compiled, BENIGN, engine, os.path.join(base, "0"), benign)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        probes = not any(f.kind == "mismatch" for f in benign.failures)
        out.probes_void = not probes
    base = tempfile.mkdtemp(prefix="fuzz-")
    try:
        for j, values in enumerate(value_sets(script, core)):
            _run_one(script, compiled, values, engine, os.path.join(base, str(j)), out, probes=probes)
        for j, bad in enumerate(NOT_INTS):  # an int input takes ints only
            values = {"x": "a", "s": "", "n": bad.replace("@", f"PWNED_n{j}")}
            try:
                engine.render(compiled, values)
            except Refused:
                continue
            out.failures.append(Failure("int-accepted", script, values, f"render accepted {values['n']!r} for {{n}}"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def reproduces(script, failure: Failure, engine: Engine | None = None) -> bool:
    """Whether ``script`` still fails as ``failure`` did, with the same values."""
    engine = engine or Engine()
    try:
        compiled = engine.compile(script.template)
    except Refused:
        return False
    if failure.kind == "int-accepted":
        try:
            engine.render(compiled, failure.values)
        except Refused:
            return False
        return True
    out, benign = Outcome(), Outcome()
    base = tempfile.mkdtemp(prefix="fuzz-")
    try:
        # shrinking makes endless loops: give up on a candidate early
        _run_one(script, compiled, failure.values, engine, os.path.join(base, "0"), out, 1.0)
        if failure.kind == "mismatch":  # the probe must still work for a harmless value
            _run_one(script, compiled, BENIGN, engine, os.path.join(base, "1"), benign, 1.0)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if benign.failures or (failure.kind == "mismatch" and not benign.probes_checked):
        return False
    return any(f.kind == failure.kind and f.marker == failure.marker and f.probe == failure.probe
               for f in out.failures)


def shrink(failure: Failure, engine: Engine | None = None, budget: int = 600) -> Failure:
    """A smaller script that fails the same way: whole lines, then halving chunks of tokens, are
    removed while the failure stays (a mismatch keeps its probe's own tokens)."""
    state = {"script": failure.script, "tries": 0}

    def attempt(drop) -> bool:
        script = state["script"]
        if failure.kind == "mismatch":
            drop = {j for j in drop if script.tokens[j].group != failure.probe}
        if not drop or state["tries"] >= budget:
            return False
        state["tries"] += 1
        candidate = script.without(drop)
        if reproduces(candidate, failure, engine):
            state["script"] = candidate
            return True
        return False

    for span in (2, 1):  # lines: pairs, then single lines
        i = 0
        while i < len(_lines(state["script"])):
            lines = _lines(state["script"])
            if not attempt({j for line in lines[i:i + span] for j in line}):
                i += 1
    chunk = max(1, len(state["script"].tokens) // 2)
    while chunk >= 1 and state["tries"] < budget:
        i, changed = 0, False
        while i < len(state["script"].tokens) and state["tries"] < budget:
            if attempt(set(range(i, min(i + chunk, len(state["script"].tokens))))):
                changed = True
                continue
            i += chunk
        if not changed:
            chunk //= 2
    return Failure(failure.kind, state["script"], failure.values, failure.detail, failure.probe,
                   failure.marker)


def _lines(script) -> list[list[int]]:
    """Token indexes of each line of the script."""
    lines, line = [], []
    for j, tok in enumerate(script.tokens):
        line.append(j)
        if not tok.ph and "\n" in tok.text:
            lines.append(line)
            line = []
    return lines + ([line] if line else [])


# --- many scripts -------------------------------------------------------------------------------

@dataclass
class Figures:
    tried: int = 0
    refused: int = 0
    run: int = 0  #: scripts rendered and run
    bash_runs: int = 0
    skipped_values: int = 0
    executions: int = 0  #: value sets that executed a value
    mismatches: int = 0
    other: int = 0  #: int-accepted, secret-shown
    probes_checked: int = 0
    probes_unreached: int = 0
    syntax_errors: int = 0
    timeouts: int = 0
    secret_in_script: int = 0
    repaired: int = 0  #: scripts run after removing the lines the engine refused
    probes_void: int = 0  #: repaired scripts whose probes no longer held a harmless value
    seconds: float = 0.0
    failures: list = field(default_factory=list)  #: the first failure of each failing script

    def add(self, out: Outcome, keep: int) -> None:
        self.tried += 1
        self.refused += out.refused
        self.run += not out.refused
        self.repaired += bool(out.repairs) and not out.refused
        self.probes_void += out.probes_void
        self.bash_runs += out.runs
        self.skipped_values += out.skipped
        self.executions += len({id(f.values) for f in out.failures if f.kind == "execution"})
        self.mismatches += sum(f.kind == "mismatch" for f in out.failures)
        self.other += sum(f.kind not in ("execution", "mismatch") for f in out.failures)
        for name in ("probes_checked", "probes_unreached", "syntax_errors", "timeouts", "secret_in_script"):
            setattr(self, name, getattr(self, name) + getattr(out, name))
        if out.failures and len(self.failures) < keep:
            self.failures.append(out.failures[0])

    @property
    def failed(self) -> bool:
        return bool(self.executions or self.mismatches or self.other)


def _job(task):
    seed, engine, core = task
    return check(bashgrammar.generate(seed), engine, core)


def fuzz(seeds, jobs: int = 1, seconds: float | None = None, engine: Engine | None = None,
         core: bool = False, keep: int = 20) -> Figures:
    """Check the scripts of ``seeds`` (an iterable; stops early after ``seconds``) on ``jobs``
    processes."""
    engine = engine or Engine()
    figures, started = Figures(), time.monotonic()
    seeds, batch = iter(seeds), max(1, jobs) * 4
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        while seconds is None or time.monotonic() - started < seconds:
            tasks = [(seed, engine, core) for _, seed in zip(range(batch), seeds)]
            if not tasks:
                break
            for out in (pool.imap_unordered(_job, tasks) if pool else map(_job, tasks)):
                figures.add(out, keep)
    finally:
        if pool:
            pool.close()
            pool.join()
    figures.seconds = time.monotonic() - started
    return figures

"""`run` asks for missing inputs on a real pseudo-terminal: by type, again after a bad value,
hiding secrets; `--no-input`, no terminal, Ctrl-C and end of input.

Prompting is console logic over one read of the graph: the re-prompt test runs on every backend,
the others on SQLite only (``ONE_BACKEND``) to keep the number of spawned processes small.
"""
import hashlib
import io
import os
import re
import shlex
import subprocess
import sys
import time

import pexpect
import pytest
from conftest import snapshot

from pipeline_engine import service
from pipeline_engine.errors import GraphStatusError, NotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 15
ONE_BACKEND = pytest.mark.parametrize("backend", ["sqlite"])  # see the module docstring


def define(db, vertices):
    service.import_graph(db, {"name": "g", "vertices": vertices}, seal=True)


def spawn(command: str, args: list[str]) -> pexpect.spawn:
    """A process on a fresh pseudo-terminal; ``child.logfile_read`` collects what it shows."""
    # TERM=dumb: no terminal escape sequences in the transcript
    child = pexpect.spawn(command, args, cwd=ROOT, encoding="utf-8", timeout=TIMEOUT,
                          env={**os.environ, "TERM": "dumb"})
    child.logfile_read = io.StringIO()
    return child


def run_on_tty(db_url: str, *args: str) -> pexpect.spawn:
    return spawn(sys.executable, ["-m", "pipeline_engine", "--db", db_url, "run", "g", *args])


def prompt_of(label: str) -> str:
    """The regex of the prompt line for ``label``, e.g. ``rows (int, >= 1)``."""
    return re.escape(label) + ": $"


def finish(child: pexpect.spawn) -> tuple[int, str]:
    """Wait for the end: (exit code, everything the terminal showed)."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.logfile_read.getvalue()


def run_id_of(text: str) -> int:
    return int(re.search(r"^run (\d+) of graph 'g' started", text, re.MULTILINE).group(1))


def track_stdout(db, run_id: int) -> str:
    return {t.vertex: t.stdout for t in service.show_run(db, run_id).tracks}["a"]


def test_missing_inputs_reads_only_and_refuses_what_start_run_refuses(db, unchanged):
    define(db, [{"name": "a", "script": "echo {x} {y} {z}",
                 "inputs": {"x": "int", "y": {"type": "str", "default": "d"}, "z": "secret"}}])
    service.import_graph(db, {"name": "draft", "vertices": [{"name": "a", "script": "echo {x}",
                                                              "inputs": {"x": "int"}}]})
    with unchanged():
        assert [(v, s.name) for v, s in service.missing_inputs(db, "g")] == [("a", "x"), ("a", "z")]
        assert [s.name for _, s in service.missing_inputs(db, "g", ["a.x=1"])] == ["z"]
        with pytest.raises(NotFoundError):
            service.missing_inputs(db, "nope")
        with pytest.raises(GraphStatusError, match="only sealed versions run"):
            service.missing_inputs(db, "draft")


def test_a_bad_int_is_asked_again_and_the_good_value_runs(db, db_url):
    # Given a sealed graph whose vertex needs an int
    define(db, [{"name": "a", "script": "echo rows={rows}",
                 "inputs": {"rows": {"type": "int", "min": 1, "description": "How many rows to make"}}}])
    # When the user answers the prompt with text, then out of range, then a good value
    child = run_on_tty(db_url)
    child.expect("How many rows to make\r\n")
    child.expect(prompt_of("rows (int, >= 1)"))
    child.sendline("abc")
    child.expect(r"Error: expected int, got 'abc'\r\n")
    child.expect(prompt_of("rows (int, >= 1)"))
    child.sendline("0")
    child.expect(r"Error: must be >= 1\r\n")
    child.expect(prompt_of("rows (int, >= 1)"))
    child.sendline("12")
    code, shown = finish(child)
    # Then the run used the good value
    assert code == 0, shown
    assert "Traceback" not in shown
    assert track_stdout(db, run_id_of(shown)) == "rows=12\n"


@ONE_BACKEND
def test_a_secret_is_not_echoed_and_reaches_the_script_but_never_the_database(db, db_url):
    secret = "Zq9-hunter2-secret"
    define(db, [{"name": "a", "script": "printf %s {token} | sha256sum",
                 "inputs": {"token": {"type": "secret", "pattern": "[A-Za-z0-9-]{12,}",
                                      "description": "The API token"}}}])
    child = run_on_tty(db_url)
    child.expect("The API token\r\n")
    child.expect(prompt_of("token (secret)"))
    child.sendline("tiny7")  # too short: asked again, and the bad value is not shown either
    child.expect(r"Error: does not match pattern .*\r\n")
    child.expect(prompt_of("token (secret)"))
    child.sendline(secret)
    code, shown = finish(child)
    assert code == 0, shown
    assert secret not in shown and "tiny7" not in shown
    # the script received the value as typed ...
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert track_stdout(db, run_id_of(shown)).split()[0] == digest
    # ... and no table holds it (stored script, inputs and parameters are masked)
    assert secret not in repr(snapshot(db))


@ONE_BACKEND
def test_choices_and_bools_are_asked_again_on_stderr_only(db, db_url, tmp_path):
    define(db, [{"name": "a", "script": "echo env={env} flag={flag}",
                 "inputs": {"env": {"type": "choice", "choices": ["dev", "prod"],
                                    "description": "Where to deploy"},
                            "flag": "bool"}}])
    out = tmp_path / "stdout.txt"
    # stdout goes to a file: the terminal shows only stderr, and the file gets no prompt
    child = spawn("bash", ["-c", f'exec "$@" > {shlex.quote(str(out))}', "bash", sys.executable, "-m",
                           "pipeline_engine", "--db", db_url, "run", "g"])
    child.expect("Where to deploy\r\n")
    child.expect(prompt_of("env (choice: dev, prod)"))
    child.sendline("qa")
    child.expect(r"Error: must be one of: dev, prod\r\n")
    child.expect(prompt_of("env (choice: dev, prod)"))
    child.sendline("prod")
    child.expect(prompt_of("flag (bool: yes/no)"))
    child.sendline("maybe")
    child.expect(r"Error: expected bool, got 'maybe'\r\n")
    child.expect(prompt_of("flag (bool: yes/no)"))
    child.sendline("off")  # what coerce accepts, not only yes/no
    code, shown = finish(child)
    assert code == 0, shown
    stdout = out.read_text()
    assert "env (" not in stdout and "Where to deploy" not in stdout
    assert track_stdout(db, run_id_of(stdout)) == "env=prod flag=false\n"


@ONE_BACKEND
def test_a_name_declared_with_two_types_is_asked_per_vertex(db, db_url):
    define(db, [{"name": "a", "script": "echo a={x}", "inputs": {"x": "int"}},
                {"name": "b", "script": "echo b={x}", "inputs": {"x": "str"}},
                {"name": "c", "script": "echo c={x}", "inputs": {"x": "int"}}])
    child = run_on_tty(db_url)
    child.expect(prompt_of("a.x (int)"))
    child.sendline("1")
    child.expect(prompt_of("b.x (str)"))
    child.sendline("text")
    child.expect(prompt_of("x (int)"))  # c: a's answer was for a only
    child.sendline("3")
    code, shown = finish(child)
    assert code == 0, shown
    outputs = {t.vertex: t.stdout for t in service.show_run(db, run_id_of(shown)).tracks}
    assert outputs == {"a": "a=1\n", "b": "b=text\n", "c": "c=3\n"}


def test_a_default_is_shown_and_taken_on_enter():
    # Inputs with a default are never missing from a run: ask them directly.
    code = ("from pipeline_engine import params, prompt\n"
            "spec = params.parse_schema('v', {'n': {'type': 'int', 'default': 5, 'description': 'Batch size'}})['n']\n"
            "print(prompt.ask([('v', spec)]))\n")
    child = spawn(sys.executable, ["-c", code])
    child.expect("Batch size\r\n")
    child.expect(prompt_of("n (int) [5]"))
    child.sendline("")
    child.expect(re.escape("['n=5']"))
    assert finish(child)[0] == 0


NEEDS_ROWS = [{"name": "a", "script": "echo {rows}", "inputs": {"rows": "int"}}]
REQUIRED = "pipeline-engine: error: vertex 'a': input 'rows' (int) is required"


@ONE_BACKEND
def test_no_input_on_a_terminal_is_exit_2_naming_the_input(db, db_url):
    define(db, NEEDS_ROWS)
    code, shown = finish(run_on_tty(db_url, "--no-input"))
    assert code == 2 and REQUIRED in shown and "rows (int)" not in shown


@ONE_BACKEND
def test_without_a_terminal_a_missing_input_is_exit_2(db, db_url):
    define(db, NEEDS_ROWS)
    result = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "run", "g"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT,
                            check=False)
    assert result.returncode == 2 and result.stderr.splitlines() == [REQUIRED]


@ONE_BACKEND
@pytest.mark.parametrize("key, kind", [("ctrl-c", "str"), ("ctrl-c", "secret"), ("ctrl-d", "str")])
def test_ctrl_c_or_end_of_input_at_a_prompt_exits_130_and_starts_nothing(db, db_url, key, kind):
    define(db, [{"name": "a", "script": "echo {x}", "inputs": {"x": kind}}])
    child = run_on_tty(db_url)
    child.expect(prompt_of(f"x ({kind})"))
    # the prompt is written just before readline waits for a key: a ^C in between (a loaded
    # machine, three test processes at once) can be taken before readline's wait begins, and the
    # wait never ends (readline's race, no person types that fast): let the wait begin
    time.sleep(0.5)
    if key == "ctrl-c":
        child.sendintr()
    else:
        child.sendeof()
    code, shown = finish(child)
    assert code == 130 and "Traceback" not in shown and "error" not in shown
    assert snapshot(db)["pipeline"] == []

"""Run inputs from files (`-p NAME=@FILE`) and the environment (`PIPELINE_ENGINE_PARAM_NAME`), for
run, resume and retry; resume and retry ask only for the secrets of the vertices that will run;
an empty secret typed at the prompt is confirmed first.

Scripts write a digest of each secret to a file: the value reaches the script, never the output.
"""
import hashlib
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_tracks, snapshot, wait_for
from test_prompt import finish, prompt_of, run_on_tty, track_stdout

from pipeline_engine import service

ONE_BACKEND = pytest.mark.parametrize("backend", ["sqlite"])


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digest_to(path) -> str:
    """Script text writing the sha256 of input {pw} to ``path``."""
    return f"printf %s {{pw}} | sha256sum | cut -c1-64 > {path}"


def read(path) -> str:
    with open(path) as f:
        return f.read().strip()


def test_a_file_gives_a_value_without_its_trailing_newline_and_at_at_is_a_literal_at(db, cli, tmp_path):
    # Given a graph with a secret and a plain input, and a file holding the secret with a newline
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "a", "script": digest_to(tmp_path / "pw") + "\necho msg={msg}",
         "inputs": {"pw": "secret", "msg": "str"}}]}, seal=True)
    (tmp_path / "secret.txt").write_text("s3cret value\n\n")
    # When it runs with -p pw=@FILE and -p msg=@@lit
    code, out, err = cli("run", "g", "--no-input", "-p", f"pw=@{tmp_path}/secret.txt", "-p", "msg=@@lit")
    # Then the secret is the content less one newline, the other value is "@lit", nothing shows the secret
    assert code == 0, err
    assert read(tmp_path / "pw") == sha("s3cret value\n")
    run_id = service.list_runs(db)[0].id
    assert "msg=@lit" in track_stdout(db, run_id)
    assert "s3cret" not in out + err + repr(snapshot(db))


def test_a_file_that_cannot_be_read_is_one_line_exit_2_and_nothing_written(db, cli, tmp_path, unchanged):
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "a", "script": "echo {pw}", "inputs": {"pw": "secret"}}]}, seal=True)
    missing = tmp_path / "nope.txt"
    with unchanged():
        code, out, err = cli("run", "g", "--no-input", "-p", f"pw=@{missing}")
    assert code == 2
    assert err.splitlines() == [f"pipeline-engine: error: parameter 'pw': cannot read file '{missing}':"
                                " No such file or directory"]


def test_environment_variables_give_inputs_the_command_line_wins_and_vertices_never_see_them(
        db, cli, tmp_path, monkeypatch):
    # Given a graph with a secret, and the environment holding it, a plain input and an unknown one
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "a", "script": digest_to(tmp_path / "pw") + "\necho n={n}\nenv | grep -c '^PIPELINE_ENGINE_PARAM_' || true",
         "inputs": {"pw": "secret", "n": "int"}}]}, seal=True)
    monkeypatch.setenv("PIPELINE_ENGINE_PARAM_pw", "from-env")
    monkeypatch.setenv("PIPELINE_ENGINE_PARAM_n", "7")
    monkeypatch.setenv("PIPELINE_ENGINE_PARAM_other", "for another graph")
    # When it runs without -p: the environment answers
    code, out, err = cli("run", "g", "--no-input")
    assert code == 0, err
    assert read(tmp_path / "pw") == sha("from-env")
    first = service.list_runs(db)[0].id
    assert track_stdout(db, first) == "n=7\n0\n"  # the vertex saw no PIPELINE_ENGINE_PARAM_* variable
    # When -p gives the secret too: -p wins
    code, out, err = cli("run", "g", "--no-input", "-p", "pw=from-cli")
    assert code == 0, err
    assert read(tmp_path / "pw") == sha("from-cli")
    assert "from-env" not in out + err + repr(snapshot(db))


def test_a_detached_run_with_a_secret_from_the_environment_is_refused(db, cli, monkeypatch, unchanged):
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "a", "script": "echo {pw}", "inputs": {"pw": "secret"}}]}, seal=True)
    monkeypatch.setenv("PIPELINE_ENGINE_PARAM_pw", "from-env")
    with unchanged():
        code, out, err = cli("run", "g", "--detach", "--no-input")
    assert code == 2 and "never stored" in err and "from-env" not in err


def test_retry_asks_only_for_the_secrets_of_the_vertices_it_runs_again(db, cli, tmp_path, monkeypatch):
    # Given a run whose vertex with secret pw succeeded and whose vertex with secret pw2 failed
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "s", "script": "test -n {pw}", "inputs": {"pw": "secret"}},
        {"name": "b", "script": f"test -e {tmp_path}/ok && printf %s {{pw2}} > {tmp_path}/pw2",
         "inputs": {"pw2": "secret"}}]}, seal=True)
    code, _, err = cli("run", "g", "--no-input", "-p", "pw=one", "-p", "pw2=two")
    assert code == 1, err
    run_id = service.list_runs(db)[0].id
    (tmp_path / "ok").touch()
    # When it is retried with no secret: only pw2 is missing
    code, _, err = cli("retry", str(run_id), "--no-input")
    assert code == 2 and "'pw2'" in err and "'pw'" not in err
    assert service.show_run(db, run_id).state == "failed"
    # When pw2 comes from the environment: b runs again and gets it, s is kept
    monkeypatch.setenv("PIPELINE_ENGINE_PARAM_pw2", "two-again")
    code, _, err = cli("retry", str(run_id), "--no-input")
    assert code == 0, err
    assert (tmp_path / "pw2").read_text() == "two-again"
    tracks = run_tracks(db, run_id)
    assert (tracks["s"].attempt, tracks["b"].attempt) == (1, 2)


def test_resume_asks_only_for_the_secrets_of_the_unfinished_vertices_and_takes_a_file(db, db_url, tmp_path):
    # Given a run killed while its second vertex ran, after the first (secret pw) succeeded
    marker = tmp_path / "started"
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "s", "script": "test -n {pw}", "inputs": {"pw": "secret"}},
        {"name": "slow", "retries": 1, "inputs": {"pw2": "secret"},
         "script": f"if [ -e {marker} ]; then printf %s {{pw2}} > {tmp_path}/pw2; exit 0; fi\n"
                   f"touch {marker}; sleep 3"}],
        "edges": [["s", "slow"]]}, seal=True)
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    first = subprocess.Popen([*cli, "run", "g", "-p", "pw=one", "-p", "pw2=two"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: os.path.exists(marker), 20, "the second vertex to start")
    finally:
        first.kill()
    run_id = int(first.stdout.readline().split()[1])
    first.wait()
    (tmp_path / "pw2.txt").write_text("from-file\n")
    # When it is resumed with only pw2, from a file
    resumed = subprocess.run([*cli, "resume", str(run_id), "--no-input", "-p", f"pw2=@{tmp_path}/pw2.txt"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    # Then it finishes: pw (of a vertex that succeeded) was not needed
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "pw2").read_text() == "from-file"
    assert service.show_run(db, run_id).state == "succeeded"


@ONE_BACKEND
@pytest.mark.parametrize("second", ["", "typed-after"])
def test_an_empty_secret_at_the_prompt_is_confirmed_by_a_second_enter(db, db_url, tmp_path, second):
    service.import_graph(db, {"name": "g", "vertices": [
        {"name": "a", "script": digest_to(tmp_path / "pw"), "inputs": {"pw": "secret"}}]}, seal=True)
    child = run_on_tty(db_url)
    child.expect(prompt_of("pw (secret)"))
    child.sendline("")
    child.expect("empty secret for 'pw': press Enter again to use it, or type the value")
    child.expect(prompt_of("pw (secret)"))
    child.sendline(second)
    code, shown = finish(child)
    assert code == 0, shown
    assert read(tmp_path / "pw") == sha(second)

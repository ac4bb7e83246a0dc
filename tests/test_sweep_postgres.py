"""Sweeps on a real PostgreSQL server (issue 12, the many-machine storage): a sweep's study lives in the database,
two worker processes share it, and an unreachable database is one line before any trial runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import write
from console.cli import app
from engine.annotations import read_annotations
from postgres import postgres_server, postgres_url  # noqa: F401 - fixtures used by name

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL driver is in the dev extra: pip install -e '.[dev]'")

QUICK = ["--set", "train.epochs=1", "data.limit=300"]
GRID = """\
base: quickstart
params:
  optim.lr: {choices: [0.02, 0.1]}
sampler: grid
pruner: none
"""
RANDOM = """\
base: quickstart
params:
  optim.lr: {choices: [0.02, 0.05, 0.1]}
sampler: random
pruner: none
seed: 0
"""
WORKER_SECONDS = 180  # a bound for one worker process (import, two or three 1-epoch trials)


def invoke(*args: str) -> Any:
    """Run the CLI in-process and return the result."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def sql(url: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows of a query run on the database itself (not through Optuna)."""
    with psycopg.connect(url) as connection:
        return connection.execute(query, args).fetchall()


def trial_runs(url: str, study: str) -> dict[int, tuple[str, str | None]]:
    """Each trial of `study` as stored in PostgreSQL: number -> (state, its run folder)."""
    rows = sql(url, "SELECT t.number, t.state, a.value_json FROM trials t JOIN studies s USING (study_id) "
                    "LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'run_dir' "
                    "WHERE s.study_name = %s", study)
    return {number: (str(state), json.loads(value) if value else None) for number, state, value in rows}


def assert_trial_run(run_dir: str, sweep: str, trial: int) -> None:
    """A trial's run folder: a finished ordinary run, tagged with its sweep and trial."""
    folder = Path(run_dir)
    assert folder.name.startswith(f"{sweep}-t{trial}-") and (folder / "config.yaml").is_file()
    assert json.loads((folder / "status.json").read_text())["state"] == "finished"
    assert read_annotations(folder).tags == [f"sweep-{sweep}", f"trial-{trial}"]


def test_a_sweep_keeps_its_study_in_postgresql(isolated_dirs: Path, postgres_url: str) -> None:
    spec = write(isolated_dirs / "pg-grid.yaml", GRID)
    result = invoke("sweep", "run", str(spec), *QUICK, "--storage", postgres_url, "--quiet")
    assert result.exit_code == 0, result.output
    assert not list((isolated_dirs / "runs").glob("sweeps/*.db"))  # no SQLite study beside the runs

    stored = trial_runs(postgres_url, "pg-grid")
    assert sorted(stored) == [0, 1] and {state for state, _ in stored.values()} == {"COMPLETE"}
    for number, (_, run_dir) in stored.items():
        assert run_dir is not None
        assert_trial_run(run_dir, "pg-grid", number)
    params = sql(postgres_url, "SELECT p.param_value FROM trial_params p JOIN trials t USING (trial_id) "
                               "WHERE p.param_name = 'optim.lr'")
    assert len(params) == 2  # the two grid points (stored as the index of the choice)

    listed = json.loads(invoke("sweep", "list", "--storage", postgres_url, "--json").stdout)
    assert [(s["sweep"], s["done"], s["trials"]) for s in listed] == [("pg-grid", 2, 2)]
    shown = json.loads(invoke("sweep", "show", "pg-grid", "--storage", postgres_url, "--json").stdout)
    assert sorted(row["params"]["optim.lr"] for row in shown["ranked"]) == [0.02, 0.1]
    assert {row["run_dir"] for row in shown["ranked"]} == {run_dir for _, run_dir in stored.values()}
    assert shown["best_trial"] == shown["ranked"][0]["trial"]


@pytest.fixture()
def workers(isolated_dirs: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Worker processes a test starts; any still running at its end is killed (a failed test leaves none)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_two_worker_processes_share_one_postgresql_study(isolated_dirs: Path, postgres_url: str,
                                                         workers: list[subprocess.Popen[str]]) -> None:
    """`sweep run` makes the study (one trial); two `sweep resume` processes, started at once, pull the other
    trials from it until it has its four: every trial counted once, each its own run folder."""
    write(isolated_dirs / "pg-shared.yaml", RANDOM)
    first = invoke("sweep", "run", "pg-shared.yaml", *QUICK, "--trials", "1", "--storage", postgres_url, "--quiet")
    assert first.exit_code == 0, first.output

    command = ["imgcls-console", "sweep", "resume", "pg-shared", "--storage", postgres_url, "--trials", "4", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two workers, one core each (not four threads on two cores)
    for _ in range(2):
        workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = [worker.communicate(timeout=WORKER_SECONDS) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr

    stored = trial_runs(postgres_url, "pg-shared")
    assert {state for state, _ in stored.values()} == {"COMPLETE"}, stored
    run_dirs = [run_dir for _, run_dir in stored.values()]
    assert None not in run_dirs and len(set(run_dirs)) == len(stored)  # each trial its own run folder
    for number, (_, run_dir) in stored.items():
        assert_trial_run(str(run_dir), "pg-shared", number)
    assert sorted(str(p) for p in (isolated_dirs / "runs").glob("pg-shared-t*")) == sorted(map(str, run_dirs))
    pids = sql(postgres_url, "SELECT DISTINCT a.value_json FROM trial_user_attributes a JOIN trials t "
                             "USING (trial_id) WHERE a.key = 'pid' AND t.number > 0")
    assert {int(pid) for pid, in pids} == {worker.pid for worker in workers}  # both workers ran trials
    for stdout, _ in outputs:  # each worker's final table is the whole study
        assert {row["trial"] for row in json.loads(stdout)["ranked"]} == set(stored)
    # Exactly the budget: a worker claims a trial only while the study, counting the trials other workers are
    # running, is short of it (without that claim both workers start a last trial each and the study has 5).
    assert sorted(stored) == [0, 1, 2, 3], stored


@pytest.fixture()
def closed_port() -> Iterator[int]:
    """A local TCP port that refuses connections: bound (so nothing else takes it) but not listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.mark.parametrize("command", [["sweep", "run", "pg-none.yaml", *QUICK], ["sweep", "resume", "pg-none"],
                                     ["sweep", "show", "pg-none"], ["sweep", "list"]])
def test_an_unreachable_database_is_one_line_before_any_trial(isolated_dirs: Path, closed_port: int,
                                                              command: list[str]) -> None:
    write(isolated_dirs / "pg-none.yaml", GRID)
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/sweeps"
    started = time.monotonic()
    result = invoke(*command, "--storage", url)
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --storage {url}: cannot open the study storage"), lines
    assert "Connection refused" in lines[0]
    assert elapsed < 10, f"{elapsed:.1f} s to refuse a closed port"
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_a_worker_claims_its_trial_under_the_databases_lock(isolated_dirs: Path, postgres_url: str,
                                                            workers: list[subprocess.Popen[str]]) -> None:
    """Workers that share only the database (each its own runs folder, so not the file lock) claim under a
    PostgreSQL advisory lock: while this test holds it, a worker waits at its claim and creates no trial; once
    it is released the worker runs the study up to its budget, exactly."""
    from engine.sweep_trials import advisory_key

    write(isolated_dirs / "pg-locked.yaml", RANDOM)
    first = invoke("sweep", "run", "pg-locked.yaml", *QUICK, "--trials", "1", "--storage", postgres_url, "--quiet")
    assert first.exit_code == 0, first.output
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key("pg-locked"),))
        command = ["imgcls-console", "sweep", "resume", "pg-locked", "--storage", postgres_url, "--trials", "2",
                   "--runs-dir", str(isolated_dirs / "elsewhere"), "--json"]
        workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"}))
        deadline = time.monotonic() + WORKER_SECONDS
        while not sql(postgres_url, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            assert workers[0].poll() is None, workers[0].communicate()
            assert time.monotonic() < deadline, "the worker never waited for the database's lock"
            time.sleep(0.05)  # polling the server's lock table for the event: the worker is waiting
        assert len(trial_runs(postgres_url, "pg-locked")) == 1  # it created nothing while it waited
        holder.execute("SELECT pg_advisory_unlock(%s)", (advisory_key("pg-locked"),))
        stdout, stderr = workers[0].communicate(timeout=WORKER_SECONDS)
    assert workers[0].returncode == 0, stderr
    stored = trial_runs(postgres_url, "pg-locked")
    assert sorted(stored) == [0, 1] and {state for state, _ in stored.values()} == {"COMPLETE"}
    assert Path(stored[1][1]).parent == isolated_dirs / "elsewhere"  # its run folder in its own runs folder
    assert json.loads(stdout)["done"] == 2

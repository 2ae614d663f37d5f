"""Sweeps on Optuna: the space file, workers sharing a study through the journal file and
through a real PostgreSQL server, and a worker killed mid-trial. No trial is lost or run twice."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the sweep extra (Optuna) is not installed")

from digitlab.errors import DigitlabError  # noqa: E402
from digitlab.jobs import sweep as sw  # noqa: E402

TINY = """
name = "tiny"
trials = 4
limit = {limit}
engine = "numpy"
model = "mlp:{{width}}"
[fixed]
epochs = {epochs}
val_split = 0.2
[search.width]
int = [8, 48]
[search.lr]
float = [0.01, 0.3]
log = true
"""


def space_file(tmp_path, limit=800, epochs=2) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(TINY.format(limit=limit, epochs=epochs))
    return path


def digitlab(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "digitlab.cli", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120, **kwargs,
    )  # fmt: skip


def check_trials(out: Path, least: int) -> dict:
    """sweep.json: at least `least` finished trials, each number once, each with its run."""
    summary = json.loads((out / "sweep.json").read_text())
    numbers = [t["number"] for t in summary["trials"]]
    assert len(numbers) == len(set(numbers))  # no trial twice
    finished = [t for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) >= least
    for t in finished:  # every trial is a normal run directory
        assert (Path(t["run"]) / "model.json").exists()
    best = summary["best"]
    assert best["val_acc"] == max(
        t["val_acc"] for t in summary["trials"] if t["state"] == "COMPLETE"
    )
    assert 0.5 < best["test_acc"] < 1  # scored once, for the chosen model
    for t in finished:  # the trials never saw the test split (a pruned one never finished)
        info = json.loads((Path(t["run"]) / "model.json").read_text())
        assert info.get("test", {"acc": None})["acc"] is None
    return summary


def test_a_space_file_is_checked_field_by_field(tmp_path):
    good = space_file(tmp_path)
    space = sw.load_space(good)
    assert space.model == ("mlp:{width}",) and set(space.search) == {"width", "lr"}
    cases = {
        'model = "mlp:{h}"\n': "model names {h} but [search.h] is missing",
        'model = "mlp:8"\n[search.nope]\nint = [1, 2]\n': "search.nope: not a training setting",
        'model = "mlp:8"\n[search.split_seed]\nchoices = [0, 1]\n': "in [fixed], not [search]",
        'name = "x"\n[fixed]\nepochs = 1\n': "bad.toml: model is missing",
        'model = "mlp:8"\n[search.lr]\nfloat = [0.3, 0.1]\n': "search.lr: float must be",
        'model = "mlp:8"\n[search.lr]\nfloat = [0, 1]\nlog = true\n': "(> 0 for log)",
        'model = "mlp:8"\n[fixed]\nepoch = 3\n': "fixed.epoch: not a training setting",
        'model = "mlp:8"\ntrials = 0\n': "trials must be a positive integer",
        'model = "mlp:8"\nworkers = 2\n': "unknown key 'workers'",
        "model = [\n": "not valid TOML",
        'model = "mlpp:32"\n': "mlpp:32",  # checked before any trial runs
        'model = "mlp:8"\nengine = "jax"\n': "engine must be numpy or torch",
        'model = "mlp:8"\n[fixed]\nepochs = "two"\n': "epochs",
        'model = "mlp:{w}"\n[fixed]\nlr = -1.0\n[search.w]\nint = [2, 4]\n': "lr",
        # checked before any trial, not failed in every trial with a traceback each
        'model = "mlp:8"\n[search.batch_size]\nchoices = [0, -5]\n': "search.batch_size: ",
        'model = "mlp:8"\n[search.batch_size]\nint = [0, 64]\n': "search.batch_size: ",
        'model = "mlp:8"\n[fixed]\nval_split = 0.0\n': "val_split must be > 0",
        # a typo, or log = "false", searched on another scale than asked without a word
        'model = "mlp:8"\n[search.lr]\nfloat = [0.01, 0.5]\nlgo = true\n': "unknown key 'lgo'",
        'model = "mlp:8"\n[search.lr]\nfloat = [0.01, 0.5]\nlog = "false"\n': "log must be",
        # in both: the search won, without a word
        'model = "mlp:8"\n[fixed]\nlr = 0.1\n[search.lr]\nfloat = [0.01, 0.5]\n': "also in [fixed]",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(DigitlabError, match=re.escape(message)):
            sw.load_space(bad)
    with pytest.raises(
        DigitlabError, match=f"^{re.escape(str(tmp_path))}: is a directory, expected a sweep space"
    ):
        sw.load_space(tmp_path)


def test_two_local_workers_share_the_journal_file(mnist, tmp_path):
    out, space = tmp_path / "sweep", space_file(tmp_path)
    done = digitlab("sweep", space, "--out", out, "--workers", "2", "--trials", "5")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    summary = check_trials(out, 5)
    assert len({t["run"] for t in summary["trials"]}) == len(summary["trials"])
    html = (out / "sweep.html").read_text()
    # the report's command continues this sweep; another --limit is refused, saying which
    assert summary["command"] == f"digitlab sweep {space} --out {out} --trials 5"
    assert summary["command"] in html
    from digitlab.jobs.sweep_report import command_of

    on_db = command_of(sw.load_space(space), out, None, "postgresql://u:secret@db/sweeps")
    assert on_db.endswith("--storage DATABASE_URL") and "secret" not in on_db
    rerun = digitlab("sweep", space, "--out", out, "--trials", "5")  # done: says so, trains none
    assert rerun.returncode == 0, rerun.stderr  # 2 workers may finish a 6th: "6 of 5"
    assert re.search(r"already holds \d+ finished trials of 5: nothing to run", rerun.stderr)
    assert len(check_trials(out, 5)["trials"]) == len(summary["trials"])
    again = digitlab("sweep", space, "--out", out, "--trials", "5", "--limit", "900")
    assert again.returncode == 1
    assert "--limit 900 here: sweep 'tiny' was started with no --limit" in again.stderr
    same = digitlab("sweep", space, "--out", out, "--trials", "5", "--limit", "800")
    assert same.returncode == 0, same.stderr  # the space's own limit: called another one
    assert "nothing to run" in same.stderr
    assert "optimisation history" in html and "data:image/png;base64," in html
    assert 'src="http' not in html  # self-contained


def running_trial(out: Path, name: str = "tiny", timeout: float = 60) -> int | None:
    """Wait until the study holds a running trial with its worker's pid; that trial's number."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / sw.JOURNAL).exists():
            try:
                study = optuna.load_study(study_name=name, storage=sw.storage_of(out, None))
                for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                    if "pid" in t.user_attrs:
                        return t.number
            except KeyError:
                pass
        time.sleep(0.05)  # a trial can last under a second on today's 2 cores
    return None


@pytest.mark.slow  # three worker processes in turn, each training: about 40 s on 2 cores
def test_a_worker_killed_mid_trial_loses_only_that_trial(mnist, tmp_path):
    out = tmp_path / "sweep"
    space = space_file(tmp_path, limit=12000, epochs=6)  # trials long enough to be caught running
    worker = subprocess.Popen(
        [sys.executable, "-m", "digitlab.cli", "sweep", str(space), "--out", str(out),
         "--trials", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        number = running_trial(out)
        assert number is not None, "no trial started"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    again = digitlab("sweep", space, "--out", out, "--trials", "3")  # the same command, again
    assert again.returncode == 0, again.stderr
    summary = check_trials(out, 3)
    states = {t["number"]: t["state"] for t in summary["trials"]}
    assert states[number] == "FAIL"  # the killed trial, marked failed; nothing else lost
    assert summary["counts"]["RUNNING"] == 0


# ---- a real PostgreSQL server, started by the test --------------------------------------------


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    """A throwaway PostgreSQL cluster in a temporary folder (initdb, pg_ctl); its URL."""
    pytest.importorskip("psycopg", reason="the sweep extra (psycopg) is not installed")
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt install postgresql; .ci/run does)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="digitlab-pg-"))  # outside pytest's private tmp
    if os.geteuid() == 0:  # initdb refuses root: run the server as Debian's postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(
        [*as_user, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "digitlab"], **run
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_user, bin_dir / "pg_ctl", "-D", data]
    subprocess.run([*pg_ctl, "-o", options, "-l", folder / "log", "-w", "start"], **run)
    try:
        yield f"postgresql://digitlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], **run)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # a database server and four worker processes: about 50 s on 2 cores
def test_two_workers_share_one_study_on_postgresql(mnist, tmp_path, postgres):
    out = tmp_path / "sweep"
    args = ["sweep", space_file(tmp_path), "--out", out, "--storage", postgres, "--trials", "5"]
    done = digitlab(*args, "--workers", "2")
    assert done.returncode == 0, done.stderr
    check_trials(out, 5)
    study = optuna.load_study(study_name="tiny", storage=postgres)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and len(numbers) >= 5
    assert not (out / sw.JOURNAL).exists()  # the database holds the study, not a journal file
    joined = digitlab(*args, "--join")  # a late worker: the study is done, it only reports
    assert joined.returncode == 0, joined.stderr
    assert len(optuna.load_study(study_name="tiny", storage=postgres).trials) == len(numbers)


def test_join_needs_a_started_sweep_and_a_bad_url_is_one_line(mnist, tmp_path):
    space = space_file(tmp_path)
    done = digitlab("sweep", space, "--out", tmp_path / "x", "--join")
    assert done.returncode == 1 and "no sweep named 'tiny'" in done.stderr
    assert "Traceback" not in done.stderr
    done = digitlab("sweep", space, "--out", tmp_path / "y", "--storage", "nosuchdb://x")
    assert done.returncode == 1 and done.stderr.startswith("error: --storage")
    assert "Traceback" not in done.stderr


def test_a_sweep_refuses_a_run_folder_a_file_and_too_few_images(mnist, tmp_path):
    space = space_file(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("{}")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args, why in [
        (("--out", run), "holds a training run"),  # wrote journal.log and trials/ into it
        (("--out", afile), "afile: exists and is not a folder"),
        (("--out", tmp_path / "s", "--limit", "5"), "--limit 5: a sweep needs at least 100"),
        (("--out", tmp_path / "s", "--workers", str((os.cpu_count() or 1) + 1)), "cores here"),
    ]:
        done = digitlab("sweep", space, *args)
        assert done.returncode == 1 and why in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert sorted(p.name for p in run.iterdir()) == ["model.json"]


def test_a_sweep_whose_every_trial_failed_can_be_mended(mnist, tmp_path):
    out = tmp_path / "s"
    broken = tmp_path / "broken.toml"  # a model only a trial can build: every trial fails
    broken.write_text(
        'name = "tiny"\nlimit = 800\nmodel = "mlp:{w}"\n[search.w]\nchoices = ["x"]\n'
    )
    done = digitlab("sweep", broken, "--out", out, "--trials", "1")
    assert done.returncode == 1 and "no trial completed" in done.stderr, done.stderr
    mended = space_file(tmp_path)  # the same name, another space: refused once a trial finished
    done = digitlab("sweep", mended, "--out", out, "--trials", "2")
    assert done.returncode == 0, done.stderr
    # not check_trials: its floor on the best test accuracy does not hold for 2 trials
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    states = [t["state"] for t in trials]
    assert states.count("FAIL") == 1 and len(states) == 3  # the failed one, then 2 finished
    assert len({t["number"] for t in trials}) == len(trials)


def test_a_grid_point_another_worker_runs_is_not_drawn_again(mnist, tmp_path):
    """`ensemble --seeds 2 --workers 2` once trained seed 0 twice: the worker that finished first
    started a third trial while the other still ran its point, and the grid, every point given
    out, drew a used one. A running point now counts, so that worker stops."""
    from digitlab.jobs.ensemble import seeds_space

    out = tmp_path / "members"
    space = dataclasses.replace(sw.load_space(seeds_space("mlp:16", 2, out)), limit=800)
    elsewhere = sw.open_study(space, out).ask()  # another worker's trial, still running
    taken = elsewhere.suggest_categorical("seed", [0, 1])  # the grid's point it was given
    summary = sw.sweep(space, out, mnist, trials=2)
    ran = [t["params"]["seed"] for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert ran == [1 - taken], summary["trials"]  # only the free point, once

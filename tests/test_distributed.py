"""Data-parallel training (`digitlab train --nproc N`): the real torchrun, gloo on the CPU.

N processes with a global batch B must end with the weights of one process with batch B, the
same seed and data order (to float rounding): each rank builds the same global batch, trains on
its slice and the gradients are averaged. The specs here have no Dropout or BatchNorm, which
would break that equality. Each run of 2 processes costs ~15 s on 2 cores (starting torchrun
and importing torch twice), so each test starts at most one such run, except the slow ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

torch = pytest.importorskip("torch")

from digitlab import jobs  # noqa: E402
from digitlab.cli.train import without_nproc  # noqa: E402
from digitlab.engines.distributed import DataParallel  # noqa: E402
from digitlab.engines.torchrun import torchrun_command  # noqa: E402
from digitlab.spec import parse_shorthand  # noqa: E402
from digitlab.train import Callback, TrainConfig  # noqa: E402

FAST = ["--limit", "2000", "--batch-size", "64", "--lr", "0.05", "--seed", "3"]
# a conv net without BatchNorm or Dropout, trained with augmentation: every random stream counts
CNN = "cnn:4/16"
CNN_CONFIG = TrainConfig(epochs=2, batch_size=64, lr=0.05, augment="affine", seed=3)


def hears_ctrl_c() -> None:
    """In a child, before it starts: SIGINT handled again. A suite started in the background
    (nohup, `&` in a script) ignores SIGINT, children inherit that, and Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def digitlab(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"DIGITLAB_HOME": str(home)}
    command = [sys.executable, "-m", "digitlab.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=110)


def assert_close_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=0, atol=1e-5, err_msg=key)


def test_two_processes_end_with_the_weights_of_one(mnist_home, tmp_path):
    common = ["train", "--model", "mlp:64-32", "--engine", "torch", "--epochs", "1", *FAST]
    two = digitlab(*common, "--nproc", "2", "--out", str(tmp_path / "two"), home=mnist_home)
    assert two.returncode == 0, two.stderr
    one = digitlab(*common, "--out", str(tmp_path / "one"), home=mnist_home)
    assert one.returncode == 0, one.stderr
    assert_close_weights(tmp_path / "one", tmp_path / "two")
    info = json.loads((tmp_path / "two" / "model.json").read_text())
    assert info["processes"] == 2 and info["training"]["finished"]
    assert info["test"]["acc"] > 0.7 and (tmp_path / "two" / "checkpoint" / "latest.json").exists()
    # the history is the global batch's, not rank 0's slice
    assert (tmp_path / "two" / "history.csv").read_text().splitlines()[1].split(",")[:6] == (
        (tmp_path / "one" / "history.csv").read_text().splitlines()[1].split(",")[:6]
    )
    assert "trained 1 epoch" in two.stdout and two.stdout.count("wrote") == 1  # rank 0 reports


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--model", "mlp:64", "--engine", "numpy"],
            "error: --nproc 2: data-parallel training needs the torch engine (--engine torch)",
        ),
        (
            ["--model", "mlp:64", "--engine", "torch", "--batch-size", "65"],
            "error: --batch-size 65 is not divisible by --nproc 2",
        ),
    ],
    ids=["numpy-engine", "indivisible-batch"],
)
def test_nproc_refuses_in_one_line_what_it_cannot_do(mnist_home, tmp_path, flags, message):
    out = tmp_path / "run"
    result = digitlab("train", *flags, "--nproc", "2", "--out", str(out), home=mnist_home)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()  # refused before anything was started or written


class StopAfter(Callback):
    """Interrupt training after `epoch`, as Ctrl-C would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, row):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.slow  # three trainings, one of them in two processes: 25-35 s on 2 cores
def test_a_run_resumed_in_two_processes_ends_as_if_never_stopped(mnist, mnist_home, tmp_path):
    spec = parse_shorthand(CNN)
    jobs.start(tmp_path / "whole", spec, "torch", CNN_CONFIG, mnist, limit=2000, device="cpu")
    with pytest.raises(KeyboardInterrupt):  # stopped after epoch 1 of 2, its checkpoint kept
        jobs.start(
            tmp_path / "cut",
            spec,
            "torch",
            CNN_CONFIG,
            mnist,
            limit=2000,
            device="cpu",
            callbacks=[StopAfter(1)],
        )
    resumed = digitlab("train", "--resume", str(tmp_path / "cut"), "--nproc", "2", home=mnist_home)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count(f"after epoch 1 of {CNN_CONFIG.epochs}") == 1  # rank 0 says it
    assert_close_weights(tmp_path / "whole", tmp_path / "cut")
    info = json.loads((tmp_path / "cut" / "model.json").read_text())
    assert info["training"]["finished"] and info["resumed_from_epoch"] == 1
    assert info["processes"] == 2


@pytest.mark.slow
def test_a_two_process_run_stopped_with_ctrl_c_resumes_exactly(mnist, mnist_home, tmp_path):
    """Slow (about 55 s on 2 cores): two runs of two processes each. Ctrl-C reaches torchrun
    through `digitlab`, rank 0 marks the run stopped, and --resume --nproc 2 finishes it."""
    config = dataclasses.replace(CNN_CONFIG, epochs=4)
    spec = parse_shorthand(CNN)
    jobs.start(tmp_path / "whole", spec, "torch", config, mnist, limit=2000, device="cpu")
    cut = tmp_path / "cut"
    flags = ["--model", CNN, "--engine", "torch", "--epochs", "4", "--augment", "affine", *FAST]
    returncode, stderr = ctrl_c_after_an_epoch(flags, cut, mnist_home)
    assert returncode == 130, stderr
    assert f"digitlab train --resume {cut}" in stderr and "Traceback" not in stderr
    info = json.loads((cut / "model.json").read_text())
    assert not info["training"]["finished"] and info["stopped"] == "interrupted"
    stopped_at = json.loads((cut / "checkpoint" / "latest.json").read_text())["epoch"]
    assert 1 <= stopped_at < 4

    resumed = digitlab("train", "--resume", str(cut), "--nproc", "2", home=mnist_home)
    assert resumed.returncode == 0, resumed.stderr
    assert_close_weights(tmp_path / "whole", cut)
    assert json.loads((cut / "model.json").read_text())["resumed_from_epoch"] == stopped_at


def ctrl_c_after_an_epoch(flags: list[str], out: Path, home: Path) -> tuple[int, str]:
    """`digitlab train FLAGS --nproc 2 --out OUT`, sent Ctrl-C (SIGINT) once its first epoch's
    checkpoint is written; (its exit status, its stderr)."""
    env = os.environ | {"DIGITLAB_HOME": str(home)}
    command = [sys.executable, "-m", "digitlab.cli", "train", *flags, "--nproc", "2"]
    proc = subprocess.Popen(
        [*command, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=hears_ctrl_c,
    )  # fmt: skip
    latest = out / "checkpoint" / "latest.json"  # written at the end of each epoch, from 1
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline and proc.poll() is None and not latest.exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)  # nothing, if it has already ended
    stderr = proc.communicate(timeout=60)[1].decode()
    return proc.returncode, stderr


def test_ctrl_c_under_torchrun_ends_in_one_line_with_no_traceback(mnist_home, tmp_path):
    """torchrun answers SIGINT with its agent's log lines and the traceback of the exception it
    raises; `digitlab train --nproc 2` leaves them out and says how to resume (Relay)."""
    out = tmp_path / "cut"
    flags = ["--model", "mlp:64", "--engine", "torch", "--epochs", "60", "--limit", "20000"]
    returncode, stderr = ctrl_c_after_an_epoch(flags, out, mnist_home)  # far from the end
    assert returncode == 130, stderr[-3000:]
    assert f"digitlab train --resume {out}" in stderr
    assert "Traceback" not in stderr and "SignalException" not in stderr, stderr[-3000:]
    assert "torch/distributed/elastic" not in stderr and "terminate called" not in stderr
    assert json.loads((out / "model.json").read_text())["stopped"] == "interrupted"


def test_the_relay_leaves_out_torchruns_report_of_ctrl_c_and_nothing_else():
    import io

    from digitlab.engines.torchrun import Relay

    agent = b"W1201 04:48:34.243000 17934 /x/torch/distributed/elastic/agent/api.py:753] Received\n"
    start = b"Traceback (most recent call last):\n"
    signalled = [start, b'  File "run.py", line 1\n', b"    main()\n",
                 b"torch.distributed.elastic.SignalException: got signal: 2\n"]  # fmt: skip
    failed = [start, b'  File "a.py", line 9\n', b"ValueError: a real failure\n"]
    text = [b"epoch 1/4\n", agent, *signalled, *failed, b"terminate called without x\n", b"end"]
    for stopping in (False, True):
        sink = io.BytesIO()
        relay = Relay(io.BytesIO(b"".join(text)), sink)
        if stopping:
            relay.stopping.set()
        relay.run()
        kept = sink.getvalue()
        if not stopping:  # before Ctrl-C: every byte, in order
            assert kept == b"".join(text)
        else:
            assert kept == b"epoch 1/4\n" + b"".join(failed) + b"end"


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_digitlab_stops_torchrun_and_its_workers(mnist_home, tmp_path):
    """Slow (about 15 s): torchrun runs in a session of its own, so a SIGKILL of `digitlab
    train --nproc 2` used to leave it and its workers training with no one watching."""
    env = os.environ | {"DIGITLAB_HOME": str(mnist_home)}
    flags = ["--model", CNN, "--engine", "torch", "--epochs", "400", *FAST, "--nproc", "2"]
    command = [sys.executable, "-m", "digitlab.cli", "train", *flags, "--out", str(tmp_path / "k")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline and not (tmp_path / "k" / "history.csv").exists():
        time.sleep(0.05)  # the workers are training
    launcher = children_of(proc.pid)
    workers = [w for pid in launcher for w in children_of(pid)]
    assert len(launcher) == 1 and len(workers) == 2, (launcher, workers)
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(running, launcher + workers)):
        time.sleep(0.1)
    alive = [p for p in launcher + workers if running(p)]
    for p in alive:  # not left behind by a failing test
        os.kill(p, signal.SIGKILL)
    assert not alive, "torchrun or a worker outlived digitlab"


@pytest.mark.slow
def test_the_readme_torchrun_form_runs_two_nodes(mnist_home, tmp_path):
    """README's multi-node command, as two one-process "nodes" on this machine meeting at a c10d
    rendezvous; only global rank 0 writes the run. Slow: about 20 s on 2 cores for what the
    --nproc test already covers, in a fast suite that is over its time budget."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    rendezvous = ["--rdzv-id", "test", "--rdzv-backend", "c10d"]
    rendezvous += ["--rdzv-endpoint", f"localhost:{port}", "--nproc-per-node", "1"]
    train = ["-m", "digitlab.cli", "train", "--model", "mlp:64", "--engine", "torch", *FAST]
    env = os.environ | {"DIGITLAB_HOME": str(mnist_home)}
    nodes = [
        subprocess.Popen(
            [*torchrun, *rendezvous, *train, "--epochs", "1", "--out", "runs/ddp"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=100) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    info = json.loads((tmp_path / "runs" / "ddp" / "model.json").read_text())
    assert info["processes"] == 2 and info["training"]["finished"]


# ---- the parts, without processes -------------------------------------------------------------


def test_each_rank_takes_a_contiguous_slice_and_the_shares_sum_to_one():
    for size in (1, 2, 3, 4):
        for n in (1, 2, 5, 64, 65):
            x, labels = torch.arange(n).float(), torch.arange(n)
            parts, shares = [], []
            for rank in range(size):
                world = DataParallel(rank, size, torch.device("cpu"))
                parts.append(world.shard(x, labels)[1])
                shares.append(world.share)
            assert torch.equal(torch.cat(parts), labels)
            assert sum(shares) == pytest.approx(1.0)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_the_relaunched_command_is_the_same_without_nproc():
    args = ["train", "--model", "mlp:64", "--nproc", "2", "--epochs", "1", "--nproc=2"]
    assert without_nproc(args) == ["train", "--model", "mlp:64", "--epochs", "1"]
    command = torchrun_command(without_nproc(args), 2)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in command and "--nproc-per-node=2" in command
    assert command[command.index("-m", 3) :] == ["-m", "digitlab.cli", *without_nproc(args)]

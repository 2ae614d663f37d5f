"""Starting data-parallel training: what `digitlab train --nproc N` checks and runs before any
process of torchrun's exists, without importing torch (which each of them imports anyway).

    >>> check("torch", batch_size=128, nproc=2)          # or a one-line DigitlabError
    >>> subprocess.run(torchrun_command(["train", "--model", "mlp:256-128"], 2))

torchrun (torch.distributed.run, which ships with torch) starts the processes and sets
RANK, WORLD_SIZE and LOCAL_RANK in each; engines.distributed is what runs inside them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

from digitlab.errors import DigitlabError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun in each process it starts


def started_by_torchrun() -> bool:
    """Whether this process is one of those torchrun started."""
    return all(name in os.environ for name in TORCHRUN_VARS)


def check(engine: str, batch_size: int, nproc: int, device: str = "auto") -> None:
    """Refuse in one line what data-parallel training over `nproc` processes cannot do."""
    if engine != "torch":
        raise DigitlabError(
            f"--nproc {nproc}: data-parallel training needs the torch engine (--engine torch); "
            f"the {engine} engine trains in one process"
        )
    if batch_size % nproc:
        raise DigitlabError(
            f"--batch-size {batch_size} is not divisible by --nproc {nproc}: every process "
            "takes an equal share of each batch"
        )
    check_device(device)
    if device == "cuda":  # one GPU per process, checked before any process starts
        import torch

        if torch.cuda.device_count() < nproc:
            raise DigitlabError(
                f"--device cuda --nproc {nproc}: this machine has "
                f"{torch.cuda.device_count()} GPU(s); each process needs its own"
            )


def check_device(device: str) -> None:
    """Only cpu (gloo) and cuda (NCCL, one GPU per process) train in several processes."""
    if device not in ("auto", "cpu", "cuda"):
        raise DigitlabError(
            f"--device {device}: with several processes give cpu, cuda or auto (each process "
            "takes the GPU of its LOCAL_RANK; torch.distributed has no backend for Apple's MPS)"
        )


def threads_per_process(nproc: int) -> int:
    """The CPU's cores shared out: N processes each running as many threads as the machine has
    cores would only fight over them."""
    return max(1, (os.cpu_count() or 1) // nproc)


def torchrun_command(args: list[str], nproc: int) -> list[str]:
    """The command that runs `digitlab ARGS` as `nproc` processes on this machine under torchrun
    (torch.distributed.run, which ships with torch; --standalone picks a free port)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*torchrun, f"--nproc-per-node={nproc}", "-m", "digitlab.cli", *args]


def start(command: list[str], env: dict, sink) -> tuple[subprocess.Popen, Relay]:
    """torchrun, started in its own session, so that Ctrl-C reaches it once (passed on by
    `digitlab train`), and on Linux bound to die with it (dies_with_parent); and the Relay
    that copies its stderr, and its workers', to `sink` (a binary stream)."""
    launcher = subprocess.Popen(
        command, env=env, start_new_session=True, preexec_fn=dies_with_parent,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    relay = Relay(launcher.stderr, sink)
    relay.start()
    return launcher, relay


# a log line of torchrun's own (its elastic agent's): "W1201 04:48:34.243000 17934 .../api.py:753]"
AGENT_LOG = re.compile(rb"^[IWE]\d{4} [\d:.]+ +\d+ \S*torch/distributed/elastic/")


class Relay(threading.Thread):
    """Copies torchrun's stderr (and its workers', which share it) line by line to `sink` (a
    binary stream). Once `stopping` is set (Ctrl-C passed on), torchrun's own report of the
    signal is left out: its agent's log lines, the traceback of the SignalException it raises
    and a worker's 'terminate called without an active exception'. Rank 0 has said how to
    resume; any other line, and any other traceback, still gets through."""

    def __init__(self, source, sink) -> None:
        super().__init__(daemon=True)
        self.source, self.sink = source, sink
        self.stopping = threading.Event()

    def run(self) -> None:
        held: list[bytes] = []  # a traceback, until its last line says what was raised
        for line in iter(self.source.readline, b""):
            if held or line.startswith(b"Traceback (most recent call last):"):
                held.append(line)
                if line[:1] not in (b" ", b"\t", b"T"):  # the exception's own line ends it
                    if not (self.stopping.is_set() and b"SignalException" in line):
                        self.write(held)
                    held = []
                continue
            noise = AGENT_LOG.match(line) or line.startswith(b"terminate called without")
            if not (self.stopping.is_set() and noise):
                self.write([line])
        self.write(held)

    def write(self, lines: list[bytes]) -> None:
        if lines:
            self.sink.write(b"".join(lines))
            self.sink.flush()


def dies_with_parent() -> None:
    """In torchrun's process, before it starts: on Linux, the kernel sends it SIGTERM when
    `digitlab train` dies, even by SIGKILL, so that it stops its workers rather than train on
    with no one watching."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

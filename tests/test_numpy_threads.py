"""The NumPy engine's BLAS thread count, chosen while it trains (engines/numpy_threads.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from digitlab import DigitlabError
from digitlab.engines import numpy_threads
from digitlab.engines.numpy_threads import BlasThreads


class FakeLib:
    """Stands for one BLAS library's controller: records the counts it was given."""

    def __init__(self, threads: int):
        self.num_threads = threads
        self.given: list[int] = []

    def set_num_threads(self, n: int) -> None:
        self.num_threads = n
        self.given.append(n)


class Machine:
    """A clock, and the CPU seconds this process and the whole machine have used."""

    def __init__(self, monkeypatch):
        self.now = self.busy = self.ours = 0.0
        monkeypatch.setattr(numpy_threads.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(numpy_threads.time, "process_time", lambda: self.ours)
        monkeypatch.setattr(numpy_threads, "machine_busy_seconds", lambda: self.busy)

    def run(self, threads: BlasThreads, seconds: float, others: float) -> list[int]:
        """Steps of 10 ms for `seconds` while other processes keep `others` cores busy."""
        used = []
        for _ in range(round(seconds / 0.01)):
            used.append(threads.current)
            self.now += 0.01
            self.ours += 0.01 * threads.current
            self.busy += 0.01 * (threads.current + others)
            threads.stepped()
        return used


def test_the_cores_others_keep_busy_are_left_to_them(monkeypatch):
    machine = Machine(monkeypatch)
    lib = FakeLib(8)
    threads = BlasThreads([lib], 8, cores=8)
    used = machine.run(threads, 2.0, others=0.3)  # a little background work: ignored
    assert set(used) == {8} and lib.given == []
    used = machine.run(threads, 2.0, others=3.0)  # three busy cores
    assert used[-100:] == [5] * 100 and lib.num_threads == 5
    assert used.index(5) <= numpy_threads.WINDOW / 0.01 * 2  # noticed within two windows
    assert "other processes used 3.0 cores" in threads.describe()
    used = machine.run(threads, 2.0, others=9.0)  # more than the machine: one thread still
    assert used[-1] == 1
    used = machine.run(threads, 2.0, others=0.0)  # quiet again: every thread back
    assert used[-100:] == [8] * 100 and threads.changes >= 3
    threads.restore()
    assert lib.num_threads == 8


def test_a_fixed_count_or_a_single_thread_is_left_alone(monkeypatch):
    machine = Machine(monkeypatch)
    lib = FakeLib(4)
    threads = BlasThreads([lib], 4, fixed=1)
    assert machine.run(threads, 1.0, others=3.0)[-1] == 1
    assert threads.describe() == "1 BLAS thread(s), fixed"
    threads.restore()
    assert lib.num_threads == 4
    lone = FakeLib(1)
    assert machine.run(BlasThreads([lone], 1), 1.0, others=1.0)[-1] == 1 and lone.given == []
    monkeypatch.setattr(numpy_threads, "machine_busy_seconds", lambda: None)  # no /proc/stat
    threads = BlasThreads([FakeLib(2)], 2)
    assert machine.run(threads, 1.0, others=1.0)[-1] == 2
    monkeypatch.setenv(numpy_threads.ENV, "two")
    with pytest.raises(DigitlabError, match="DIGITLAB_BLAS_THREADS='two': expected a whole"):
        BlasThreads.for_this_process()


def test_a_real_busy_process_is_seen(monkeypatch):
    """A real process spinning on a core, seen through the real /proc/stat."""
    monkeypatch.delenv(numpy_threads.ENV, raising=False)  # conftest fixes the count for the rest
    limits = threadpool_limits(limits=2, user_api="blas")  # a `pytest -n 2` worker keeps to one
    busy = None
    try:
        threads = BlasThreads.for_this_process()
        if not threads.choosing:
            pytest.skip(f"nothing to choose here: {threads.describe()} (or no /proc/stat)")
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # it starts spinning
        threads.mark = threads._snapshot()
        time.sleep(numpy_threads.WINDOW * 2)
        threads.look()
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        limits.restore_original_limits()
    assert threads.others >= numpy_threads.BUSY_CORE, threads.describe()
    assert threads.current < threads.most, threads.describe()


def test_training_with_the_choice_agrees_with_a_fixed_count(mnist, monkeypatch):
    """Real training through the chooser: on a quiet machine it keeps the starting count, so
    the weights are those of that fixed count; if load moved it, they agree to float tolerance."""
    from digitlab.engines import numpy_engine
    from digitlab.spec import parse_shorthand
    from digitlab.train import TrainConfig, fit

    config = TrainConfig(epochs=1, batch_size=128, lr=0.05, val_split=0.0)
    x, y = mnist.train.images[:6000], mnist.train.labels[:6000]

    def weights(fixed: str | None):
        if fixed:
            monkeypatch.setenv(numpy_threads.ENV, fixed)
        else:
            monkeypatch.delenv(numpy_threads.ENV, raising=False)
        model = numpy_engine.build(parse_shorthand("mlp:128"), seed=0)
        fit(model, x, y, config)
        return model.state_dict()

    chosen = weights(None)
    fixed = weights(str(BlasThreads.for_this_process().most))
    for key in fixed:
        np.testing.assert_allclose(chosen[key], fixed[key], rtol=1e-3, atol=1e-5)

"""How many threads NumPy's BLAS may use while the NumPy engine trains, chosen as it runs.

OpenBLAS's threads spin while they wait for work. Between two matrix products the engine does
element-wise work on one thread, and meanwhile the idle BLAS threads spin. On a machine where
another process keeps a core busy, those spinning threads take the core the engine's own thread
needs: on 2 cores, with one busy, an epoch that takes 1 s quiet took 4 s (a single product
still looks faster on two threads, so timing one cannot tell). What does tell is how much CPU
the other processes use, which Linux counts in /proc/stat: every quarter of a second the trainer
compares the machine's busy time with its own and gives the BLAS one thread fewer for each core
the others keep busy.

    >>> threads = BlasThreads.for_this_process()
    >>> for x, y in batches:
    ...     model.train_step(x, y, optimizer)
    ...     threads.stepped()

On a quiet machine the count stays at the most threads the BLAS started with (OPENBLAS_NUM_THREADS
or OMP_NUM_THREADS still set that), so a run is bit for bit what it is with a fixed count, and
resumes exactly. Under load the count changes; OpenBLAS's results differ in the last bits between
thread counts, so the weights then agree with a quiet run's to float tolerance, not bit for bit.
DIGITLAB_BLAS_THREADS=N fixes the count. Where /proc/stat is missing (not Linux) nothing changes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from digitlab.errors import DigitlabError

ENV = "DIGITLAB_BLAS_THREADS"
WINDOW = 0.25  # seconds of wall time between two looks at the other processes' CPU use
BUSY_CORE = 0.5  # the others' use, in cores, from which a core counts as theirs
PROC_STAT = Path("/proc/stat")


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (user, nice, system, irq, softirq and
    steal: what a hypervisor took counts as busy too); None where /proc/stat cannot be read."""
    try:
        with PROC_STAT.open() as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


class BlasThreads:
    """Gives the BLAS the cores other processes leave free; a no-op where there is no choice."""

    def __init__(self, controllers: list, most: int, fixed: int | None = None, cores=None):
        self.controllers = controllers  # threadpoolctl's controllers of the BLAS libraries
        self.most = most
        self.cores = cores or os.cpu_count() or 1
        self.choosing = bool(controllers) and fixed is None and most > 1
        self.current = min(fixed or most, most)
        self.changes = 0
        self.others = 0.0  # cores the other processes used in the last window
        self.mark = self._snapshot() if self.choosing else None
        if self.mark is None:
            self.choosing = False
        self._set(self.current)

    @classmethod
    def for_this_process(cls) -> BlasThreads:
        """Controls the BLAS that NumPy loaded; DIGITLAB_BLAS_THREADS=N fixes the count."""
        import numpy  # noqa: F401  (threadpoolctl finds only the libraries already loaded)
        from threadpoolctl import ThreadpoolController

        blas = ThreadpoolController().select(user_api="blas").lib_controllers
        most = max((lib.num_threads for lib in blas), default=1)
        fixed = os.environ.get(ENV) or None
        if fixed is not None and not (fixed.isdigit() and int(fixed) >= 1):
            raise DigitlabError(f"{ENV}={fixed!r}: expected a whole number of threads, 1 or more")
        return cls(blas, most, int(fixed) if fixed else None)

    # -- what the trainer calls -------------------------------------------------------------------
    def stepped(self) -> None:
        """Called after each training step: every WINDOW seconds, the count is chosen again."""
        if self.choosing and time.perf_counter() - self.mark[0] >= WINDOW:
            self.look()

    def look(self) -> None:
        """Measure the others' CPU use over the window just ended and set the count from it."""
        now = self._snapshot()
        if now is None:
            self.choosing = False
            return
        wall, busy, ours = (b - a for a, b in zip(self.mark, now, strict=True))
        self.mark = now
        self.others = max(0.0, (busy - ours) / wall)
        taken = 0 if self.others < BUSY_CORE else round(self.others)
        count = max(1, min(self.most, self.cores - taken))
        if count != self.current:
            self.current, self.changes = count, self.changes + 1
            self._set(count)

    def describe(self) -> str:
        """One line for logs: the count in use and why."""
        if not self.choosing:
            return f"{self.current} BLAS thread(s), fixed"
        return (
            f"{self.current} of {self.most} BLAS threads (other processes used "
            f"{self.others:.1f} cores; changed {self.changes} time(s))"
        )

    def restore(self) -> None:
        """Give the BLAS back its starting thread count (when training ends)."""
        self._set(self.most)

    # -- inside ------------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[float, float, float] | None:
        busy = machine_busy_seconds()
        return None if busy is None else (time.perf_counter(), busy, time.process_time())

    def _set(self, count: int) -> None:
        for lib in self.controllers:
            if lib.num_threads != count:
                lib.set_num_threads(count)

"""Data-parallel training with torch.distributed: torchrun starts one process per share of the
machine (CPU cores with gloo, one GPU each with NCCL); each takes its part of every batch.

    $ digitlab train --model mlp:256-128 --engine torch --nproc 2   # torchrun, started for you
    >>> with joined("auto") as world:                  # in each process torchrun starts
    ...     history = Trainer(model, images, labels, config, world=world).run()

Why N processes end with the weights of one process with the same global batch B (to float
rounding): every rank draws the same permutation and the same augmentation for the whole
global batch (same seeds), then keeps its contiguous slice of it (B/N images); its loss is the
mean over that slice; before each step the gradients are weighted by each slice's share of the
batch and summed across the ranks (all_reduce), which is the gradient of the mean over the
whole batch; then every rank takes the same step. Dropout draws other masks on a slice, and
BatchNorm normalises by the slice's statistics, so models with them train as well but not
exactly as one process does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import distributed as dist

from digitlab.engines.torchrun import TORCHRUN_VARS, check, check_device, threads_per_process
from digitlab.errors import DigitlabError

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # what torch.distributed runs on each device type


def rank_device(device: str, local_rank: int) -> torch.device:
    """This process's device: the GPU of its LOCAL_RANK on CUDA, else the CPU."""
    check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise DigitlabError(
            f"process {local_rank} of this machine has no GPU of its own (there are "
            f"{torch.cuda.device_count()}); start as many processes as GPUs, or use --device cpu"
        )
    return torch.device("cuda", local_rank)


def environment() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun set them."""
    try:
        return tuple(int(os.environ[name]) for name in TORCHRUN_VARS)  # type: ignore[return-value]
    except (KeyError, ValueError):
        raise DigitlabError(
            f"data-parallel training runs under torchrun, which sets {', '.join(TORCHRUN_VARS)}; "
            "start it with digitlab train --nproc N"
        ) from None


class DataParallel:
    """This process's part in data-parallel training: its `rank` among `size`, its `device`.
    The Trainer hands each global batch to `shard`, wraps its optimizer with `wrap`, and sums
    its epoch totals and validation with `sum` and `evaluate`."""

    def __init__(self, rank: int, size: int, device: torch.device):
        self.rank, self.size, self.device = rank, size, device
        self.share = 1.0 / size  # this rank's share of the current global batch

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and reports."""
        return self.rank == 0

    def check(self, engine: str, batch_size: int) -> None:
        """Refuse in one line an engine or a batch size these processes cannot train with."""
        check(engine, batch_size, self.size, self.device.type)

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's contiguous part of n items (parts differ by one at most)."""
        return self.rank * n // self.size, (self.rank + 1) * n // self.size

    def shard(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of a global batch; remembers its share for the next step."""
        lo, hi = self.bounds(len(labels))
        self.share = (hi - lo) / len(labels)
        return x[lo:hi], labels[lo:hi]

    def wrap(self, optimizer, model) -> AveragingOptimizer:
        """`optimizer`, averaging gradients across the ranks before each step; the ranks start
        from rank 0's weights (as torch DDP does)."""
        if model.engine != "torch":
            raise DigitlabError("data-parallel training needs the torch engine (--engine torch)")
        params = model.parameters()
        for p in params:
            dist.broadcast(p.data, src=0)
        return AveragingOptimizer(optimizer, params, self)

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        """Replace each gradient by the gradient of the mean loss over the global batch: each
        rank's (of the mean over its slice) weighted by its share, summed over the ranks."""
        # a rank with an empty slice (the last batch smaller than the ranks) adds zeros
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]) * self.share  # one all_reduce in all
        dist.all_reduce(flat)
        for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
            p.grad = part.view_as(p)

    def sum(self, *values) -> list[float]:
        """Each value summed over the ranks (float64, so counts of images stay exact)."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def evaluate(
        self, model, images: np.ndarray, labels: np.ndarray, mean: float, std: float
    ) -> tuple[float, float]:
        """Mean loss and accuracy over all images, each rank scoring its contiguous part."""
        lo, hi = self.bounds(len(labels))
        n = hi - lo
        loss, acc = model.evaluate(images[lo:hi], labels[lo:hi], mean, std) if n else (0.0, 0.0)
        total, right, count = self.sum(loss * n, round(acc * n), n)
        return total / max(count, 1), right / max(count, 1)


class AveragingOptimizer:
    """An engine optimizer whose step() first averages the gradients across the ranks (as
    Horovod's DistributedOptimizer does), so the training loop is the same for one process or
    many. Its state is the inner optimizer's: checkpoints do not depend on the process count."""

    def __init__(self, inner, params: list[torch.Tensor], world: DataParallel):
        self.inner, self.params, self.world = inner, params, world

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.inner.lr = value

    def zero_grad(self) -> None:
        self.inner.zero_grad()

    def step(self) -> None:
        self.world.average_gradients(self.params)
        self.inner.step()

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.inner.load_state_dict(state)


@contextmanager
def joined(device: str = "auto") -> Iterator[DataParallel]:
    """Join the process group torchrun set up for this process (its rendezvous in the
    environment), on `device`'s backend; leave it on exit."""
    rank, size, local_rank = environment()
    chosen = rank_device(device, local_rank)
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun sets it to 1 when it starts several
        torch.set_num_threads(threads_per_process(int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group(BACKENDS[chosen.type], rank=rank, world_size=size)
    try:
        yield DataParallel(rank, size, chosen)
        # leave together: a rank that tore down its group while rank 0 was still writing and
        # testing was aborted by gloo's threads ("terminate called without an active
        # exception"), seen on a loaded machine; on an error there is no one to wait for
        dist.barrier()
    finally:
        dist.destroy_process_group()

"""Issue 19's GPU figures and issue 18's ensemble, in one pass on a CUDA machine.

    bash benchmarks/gpu.sh                      # there: the CUDA tests, then this; files in $OUT
    python -m benchmarks.gpu --record FOLDER    # here: docs/benchmarks/gpu.md (gpu_record.py)

GPU time is scarce, so the stages run in order of worth and gpu.json is written again after
each one: a run cut short keeps what it measured. Every time is a training clock that stops
after the GPU has finished (the epoch's loss is read back, which synchronises); the test set
is scored after each epoch off the clock, as in the peer suite, and only to stop the clock.

The stages, in the order they run:
- cnn_small: the `cnn-small` preset to 99.0% test accuracy, 10 seeds, after one warm-up run
  that is not counted (the CUDA context and cuDNN's first kernels).
- torch_loop: the peer suite's plain PyTorch loop (DataLoader, batch 64, Adam) on the same GPU.
- variants: cnn-small with larger batches and cuDNN's autotuner (10 seeds each); saved after
  each variant.
- ensemble, ensemble_e40: `digitlab train --model cnn-best --device cuda` for seeds 0-4, the
  five processes at once on the one GPU (then five more with --epochs 40); each member's test
  accuracy. The members come back as NAME.tar.gz and `--record` combines them with
  `digitlab ensemble` (3 and 5 members) on the CPU, which costs no GPU time.
- cnn_best: the `cnn-best` recipe's time to 99.7%, 2 seeds.
- compiled: cnn-small with torch.compile.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from benchmarks.common import RESULTS
from benchmarks.records import TestClock
from digitlab.atomic import write_text

TARGET_SMALL, TARGET_BEST = 0.99, 0.997
# `--dry`: the whole pass on the CPU in a few minutes, with 1 seed, 3,000 training images and
# one-epoch members, to check the script before spending GPU time on it
DRY = os.environ.get("DIGITLAB_GPU_DRY") == "1"
DEVICE, SEEDS = ("cpu", 1) if DRY else ("cuda", 10)
# (name, batch, epochs, peak lr, cudnn.benchmark, torch.compile): cnn-small's layers each time;
# the compiled variant drops each epoch's last, smaller batch (one shape: no recompiling)
VARIANTS = [
    ("batch 256, 3 epochs, lr 0.1", 256, 3, 0.1, False, False),
    ("batch 512, 3 epochs, lr 0.2", 512, 3, 0.2, False, False),
    ("batch 512, 4 epochs, lr 0.2", 512, 4, 0.2, False, False),
    ("batch 1024, 4 epochs, lr 0.4", 1024, 4, 0.4, False, False),
    ("batch 1024, 6 epochs, lr 0.4", 1024, 6, 0.4, False, False),
    ("batch 512, 3 epochs, lr 0.2, cudnn.benchmark", 512, 3, 0.2, True, False),
]
COMPILED = [("batch 512, 3 epochs, lr 0.2, torch.compile", 512, 3, 0.2, True, True)]


class StopAt(TestClock):
    """TestClock that also stops training once the target is reached: later epochs would not
    change the figure, and GPU time is scarce."""

    best = 0.0

    def on_epoch_end(self, trainer, row):
        super().on_epoch_end(trainer, row)
        self.best = max(self.best, self.last)
        trainer.stopped_early = self.reached is not None


def time_to(ds, spec, config, seed: int, target: float, compile: bool = False) -> dict:
    """Train on all 60,000 images until test accuracy reaches `target` (or the recipe's epochs
    end); seconds on the training clock."""
    from digitlab.engines import torch_engine
    from digitlab.train import fit

    model = torch_engine.build(spec, seed=seed, device=DEVICE, compile=compile)
    clock = StopAt(ds, target)
    config = dataclasses.replace(config, seed=seed, val_split=0.0)
    history = fit(model, ds.train.images, ds.train.labels, config, [clock])
    reached = clock.reached
    return {
        "seed": seed,
        "seconds": reached[0] if reached else None,
        "epochs": reached[1] if reached else None,
        "acc": reached[2] if reached else None,
        "epoch_seconds": [r["seconds"] for r in history.rows],
        "spent": clock.spent,
        "best_acc": clock.best,
    }


def seeds_of(ds, spec, config, target, compile=False) -> dict:
    n = SEEDS
    time_to(ds, spec, config, 100, target, compile)  # warm-up, not counted
    rows = [time_to(ds, spec, config, seed, target, compile) for seed in range(n)]
    reached = [r["seconds"] for r in rows if r["seconds"] is not None]
    return {
        "rows": rows,
        "reached": f"{len(reached)}/{n}",
        "mean_s": statistics.mean(reached) if reached else None,
        "median_s": statistics.median(reached) if reached else None,
    }


def cnn_small(ds) -> dict:
    from digitlab.presets import PRESETS

    preset = PRESETS["cnn-small"]
    return seeds_of(ds, preset.spec, preset.config, TARGET_SMALL)


def torch_loop(ds) -> dict:
    from benchmarks.peers import contenders as C
    from benchmarks.peers import summarise

    d = C.Data(ds.train.images, ds.train.labels, ds.test.images, ds.test.labels)
    rows = []
    for seed in range(1 if DRY else 3):
        clock = C.EpochClock(evaluate=None, targets=(TARGET_SMALL,), max_epochs=2 if DRY else 15)
        C.torch_loop(d, seed, clock, kind="cnn", device=DEVICE)
        rows.append({"seed": seed, "epochs": clock.epochs})
    reached = summarise(rows, (TARGET_SMALL,))["time_to"][str(TARGET_SMALL)]
    return {"rows": rows, "time_to": reached, "median_s": reached["median_s"]}


def variants(ds, which=VARIANTS, progress=lambda partial: None) -> dict:
    import torch

    from digitlab.presets import PRESETS

    preset, out = PRESETS["cnn-small"], {}
    for name, batch, epochs, lr, autotune, compile in which:
        config = dataclasses.replace(preset.config, batch_size=batch, epochs=epochs, lr=lr)
        config = dataclasses.replace(config, drop_last=compile)
        torch.backends.cudnn.benchmark = autotune
        try:
            out[name] = seeds_of(ds, preset.spec, config, TARGET_SMALL, compile=compile)
        finally:
            torch.backends.cudnn.benchmark = False
        progress(out)  # a cut run keeps the variants it finished
    return out


def cnn_best(ds) -> dict:
    from digitlab.presets import PRESETS

    preset = PRESETS["cnn-best"]
    config = dataclasses.replace(preset.config, epochs=1) if DRY else preset.config
    rows = [time_to(ds, preset.spec, config, seed, TARGET_BEST) for seed in range(1 if DRY else 2)]
    return {"rows": rows}


def ensemble(work: Path, epochs: int | None, limit_s: float, out_dir: Path | None = None) -> dict:
    """Five `digitlab train --model cnn-best` processes at once on the one GPU (seeds 0-4);
    members still training at `limit_s` are stopped and left out. The finished members come
    back in OUT/NAME.tar.gz: `--record` combines them (`digitlab ensemble`) on the CPU, where
    reading the test set with five NumPy-engine CNNs costs no GPU time. (Not `digitlab ensemble
    --seeds`: it trains through Optuna's sweep workers, and the GPU machine has no Optuna.)"""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    name = f"cnn-best-e{epochs}" if epochs else "cnn-best"
    procs, started = [], time.perf_counter()
    for seed in range(5):
        out = work / f"{name}-seed{seed}"
        command = [sys.executable, "-m", "digitlab.cli", "train", "--model", "cnn-best"]
        command += ["--device", DEVICE, "--seed", str(seed), "--out", str(out), "--overwrite"]
        command += ["--epochs", str(epochs)] if epochs else []
        command += ["--limit", "2000", "--epochs", "1"] if DRY else []
        log = open(work / f"{name}-seed{seed}.log", "w")  # noqa: SIM115 (closed below)
        procs.append((seed, out, log, subprocess.Popen(command, env=env, stdout=log, stderr=log)))
    members = []
    for seed, out, log, proc in procs:
        try:
            proc.wait(timeout=max(1.0, limit_s - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if proc.returncode != 0:
            tail = Path(log.name).read_text()[-400:]
            members.append({"seed": seed, "error": f"exit {proc.returncode}: {tail}"})
            continue
        info = json.loads((out / "model.json").read_text())
        with open(out / "history.csv", newline="") as f:
            last = list(csv.DictReader(f))[-1]
        members.append(
            {
                "seed": seed,
                "test_acc": info["test"]["acc"],
                "val_acc": float(last["val_acc"]),
                "seconds": info["training"].get("seconds"),
                "run": str(out),
            }
        )
    shown = f"digitlab train --model cnn-best --device {DEVICE} --seed S" + (
        f" --epochs {epochs}" if epochs else ""
    )
    result: dict = {"name": name, "command": shown, "members": members}
    result["wall_s"] = time.perf_counter() - started
    ok = [m for m in members if "test_acc" in m]
    if ok:
        accs = [m["test_acc"] for m in ok]
        result |= {"mean": statistics.mean(accs), "min": min(accs), "max": max(accs)}
    if ok and out_dir is not None:  # the members come back, to be combined on a CPU
        with tarfile.open(out_dir / f"{name}.tar.gz", "w:gz") as tar:
            for m in ok:
                for part in ("model.json", "model.safetensors", "history.csv"):
                    tar.add(Path(m["run"]) / part, arcname=f"{name}/seed{m['seed']}/{part}")
    return result


def main_gpu(out: Path, only: list[str] | None = None) -> dict:
    import torch

    from digitlab import data
    from digitlab.machine import describe

    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available()
    results: dict = {"machine": describe() | {
        "gpu": torch.cuda.get_device_name(0) if gpu else "none (dry run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }, "date": time.strftime("%Y-%m-%d"), "stages": {}}  # fmt: skip
    ds = data.load("mnist")
    if DRY:
        train, test = ds.train, ds.test
        train = dataclasses.replace(train, images=train.images[:3000], labels=train.labels[:3000])
        test = dataclasses.replace(test, images=test.images[:1000], labels=test.labels[:1000])
        ds = dataclasses.replace(ds, train=train, test=test)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "digitlab-gpu"
    work.mkdir(parents=True, exist_ok=True)
    stages = [
        ("cnn_small", lambda: cnn_small(ds)),
        ("torch_loop", lambda: torch_loop(ds)),
        ("variants", lambda: variants(ds, VARIANTS, partial("variants"))),
        ("ensemble", lambda: ensemble(work, None, 150, out)),
        ("ensemble_e40", lambda: ensemble(work, 40, 200, out)),
        ("cnn_best", lambda: cnn_best(ds)),
        ("compiled", lambda: variants(ds, COMPILED, partial("compiled"))),
    ]
    results_file = out / ("gpu.json" if not only else f"gpu-{'-'.join(only)}.json")

    def save() -> None:
        write_text(results_file, json.dumps(results, indent=1, default=str) + "\n")

    def partial(stage: str):
        def keep(done: dict) -> None:
            results["stages"][stage] = dict(done) | {"unfinished": True}
            save()

        return keep

    if only:
        stages = [(name, stage) for name, stage in stages if name in only]
    for name, stage in stages:
        started = time.perf_counter()
        try:
            results["stages"][name] = stage()
        except Exception as e:  # a stage that breaks must not cost the others their GPU time
            results["stages"][name] = {"error": f"{type(e).__name__}: {e}"}
        results["stages"][name]["stage_s"] = time.perf_counter() - started
        save()
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
    return results


def run() -> dict:
    """`python -m benchmarks gpu`: on a CUDA machine, the whole pass into docs/benchmarks/."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no GPU: torch.cuda.is_available() is False on this machine"}
    out = Path(os.environ.get("OUT") or RESULTS / "gpu-run")
    results = main_gpu(out)
    from benchmarks.gpu_record import record

    record(out)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--out", type=Path, help="measure here (on the GPU machine)")
    parser.add_argument("--record", type=Path, help="write docs/benchmarks/gpu.md from FOLDER")
    parser.add_argument("--dry", action="store_true", help="check the script on the CPU, small")
    parser.add_argument("--stages", help="only these stages, comma-separated (a second pass)")
    args = parser.parse_args()
    if args.dry:
        DRY, DEVICE, SEEDS = True, "cpu", 1
    if args.record:
        from benchmarks.gpu_record import record

        print(f"wrote {record(args.record)}")
    else:
        only = args.stages.split(",") if args.stages else None
        out = args.out or (Path(os.environ["OUT"]) if "OUT" in os.environ else None)
        if out is None:
            parser.error("--out FOLDER (or $OUT) names where the results go")
        main_gpu(out, only)

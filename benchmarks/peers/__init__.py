"""digitlab against the libraries users would pick instead (issue 9), in one run on one machine.

    python -m benchmarks peers            # full: about 16 minutes on 2 cores
    python -m benchmarks --quick peers    # quick: one run each, case 2 at 20 epochs, ≤ 5 min
    digitlab bench [--quick] [--json]

Cases (MNIST 60,000 / 10,000; same normalisation, layers, seeds for every contender):
1. MLP 784-256-128-64-10: digitlab's `numpy-fast` recipe (both engines), digitlab with the
   peers' settings (Adam 1e-3, batch 64), scikit-learn MLPClassifier, Keras 3 (torch backend)
   and a plain PyTorch DataLoader loop; time to 97.5% and 98.0% test accuracy.
2. The seeds' Keras recipe, 784-128-64-16-10, Adam, batch 1000, 100 epochs: Keras vs digitlab's
   recipe for it (`keras-128-64-16`: + cosine decay, label smoothing 0.1) and the recipe as
   written on both engines; time and final accuracy.
3. cnn-small: digitlab's PyTorch engine (its recipe) vs a plain PyTorch loop (Adam, batch 64)
   with the same network; time to 99.0%.
4. Inference over the 10,000 test images and one image at a time: NumPy engine, PyTorch engine,
   onnxruntime.
5. On a GPU, when there is one: case 3 there, and the `cnn-best` recipe.

How it is measured: each contender runs in its own fresh Python process (nothing warm from
another contender; its peak memory is that process's peak RSS, VmHWM, imports and data
included, with its RSS after the warm-up beside it). In that process: one warm-up run of one
epoch on 2,000 images, then `repeats` timed runs with seeds 0, 1, 2, ... (the same seeds for
every contender). Time to a target is the sum of epoch times up to the first epoch whose test
accuracy reaches it; the test set is scored after every epoch, off the clock. Machine load:
the CPU time other processes used while each contender ran (from /proc/stat), as a share.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

from benchmarks.common import ROOT, save
from benchmarks.peers import contenders as C
from benchmarks.peers.report import markdown, verdicts

RESULTS_DIR = ROOT / "benchmarks" / "results"
# test accuracies timed; a run stops at the last one (on a GPU cnn-best is meant to reach 99.6%)
TARGETS = {"mlp": (0.975, 0.98), "keras-recipe": (), "cnn": (0.99,), "cnn-fast": (0.99,),
           "gpu": (0.99, 0.996)}  # fmt: skip
# cases benchmarks/records.py runs and this suite does not
RECORDS_ONLY = ("cnn-fast",)


@dataclass(frozen=True)
class Plan:
    """How much work each case does."""

    mode: str
    repeats: int  # timed runs per contender, seeds 0 .. repeats-1
    mlp_max_epochs: int  # case 1: stop here if 98% is not reached
    keras_epochs: int  # case 2: the recipe says 100
    cnn_max_epochs: int  # case 3, plain loop
    inference_repeats: int
    latency_calls: int
    n_train: int = 60000
    n_test: int = 10000
    warmup_train: int = 2000


PLANS = {
    "full": Plan("full", 3, 15, 100, 12, 5, 1000),
    "quick": Plan("quick", 1, 10, 20, 7, 3, 300),
    "smoke": Plan("smoke", 1, 1, 1, 1, 1, 5, n_train=500, n_test=200, warmup_train=100),
}


def recipes() -> dict[str, dict]:
    """Epochs and peak lr of digitlab's recipes in the suite, for the report's text."""
    from digitlab.presets import PRESETS, RECIPES

    fast, small = RECIPES["numpy-fast"][1], PRESETS["cnn-small"].config
    return {
        name: {"epochs": c.epochs, "lr": c.lr}
        for name, c in (("numpy-fast", fast), ("cnn-small", small))
    }


def lineup(plan: Plan, device: str = "cpu") -> dict[str, dict[str, tuple]]:
    """case -> contender -> (trainer, keyword arguments, max epochs)."""
    from digitlab.presets import PRESETS, RECIPES
    from digitlab.train import TrainConfig

    fast_spec, fast = RECIPES["numpy-fast"]
    adam = TrainConfig(batch_size=C.PEER_BATCH, optimizer="adam", lr=C.PEER_LR,
                       schedule="constant", val_split=0.0)  # fmt: skip
    keras_spec, keras_cfg = RECIPES["seed-keras-128-64-16"]
    ours_spec, ours_cfg = RECIPES["keras-128-64-16"]
    small, (fast_cnn, fast_cnn_cfg) = PRESETS["cnn-small"], RECIPES["cnn-fast"]
    m, k = plan.mlp_max_epochs, plan.keras_epochs
    cases = {
        "mlp": {
            "digitlab numpy, numpy-fast recipe": (C.digitlab, dict(spec=fast_spec, config=fast, engine="numpy"), fast.epochs),
            "digitlab torch, numpy-fast recipe": (C.digitlab, dict(spec=fast_spec, config=fast, engine="torch"), fast.epochs),
            "digitlab numpy, Adam batch 64": (C.digitlab, dict(spec=fast_spec, config=adam, engine="numpy"), m),
            "digitlab torch, Adam batch 64": (C.digitlab, dict(spec=fast_spec, config=adam, engine="torch"), m),
            "scikit-learn MLPClassifier": (C.sklearn_mlp, {}, m),
            "Keras 3 (torch backend)": (C.keras_mlp, {}, m),
            "plain PyTorch loop": (C.torch_loop, dict(kind="mlp"), m),
        },
        "keras-recipe": {
            C.KERAS_OURS: (C.digitlab, dict(spec=ours_spec, config=ours_cfg, engine="numpy"), k),
            "digitlab numpy, as written": (C.digitlab, dict(spec=keras_spec, config=keras_cfg, engine="numpy"), k),
            "digitlab torch, as written": (C.digitlab, dict(spec=keras_spec, config=keras_cfg, engine="torch"), k),
            "Keras 3 (torch backend)": (C.keras_recipe, {}, k),
        },
        "cnn": {
            "digitlab torch, cnn-small recipe": (C.digitlab, dict(spec=small.spec, config=small.config, engine="torch"), small.config.epochs),
            "plain PyTorch loop": (C.torch_loop, dict(kind="cnn"), plan.cnn_max_epochs),
        },
        "cnn-fast": {  # issue 19's record against the plain loop on cnn-small, and on its own layers
            "digitlab torch, cnn-fast recipe": (C.digitlab, dict(spec=fast_cnn, config=fast_cnn_cfg, engine="torch"), fast_cnn_cfg.epochs),
            "plain PyTorch loop": (C.torch_loop, dict(kind="cnn"), plan.cnn_max_epochs),
            "plain PyTorch loop, cnn-fast layers": (C.torch_loop, dict(kind="cnn-fast"), plan.cnn_max_epochs),
        },
    }  # fmt: skip
    if device != "cpu":
        best = PRESETS["cnn-best"]
        cases["gpu"] = {
            "digitlab torch, cnn-small recipe": (C.digitlab, dict(spec=small.spec, config=small.config, engine="torch", device=device), small.config.epochs),
            "plain PyTorch loop": (C.torch_loop, dict(kind="cnn", device=device), plan.cnn_max_epochs),
            "digitlab torch, cnn-best recipe": (C.digitlab, dict(spec=best.spec, config=best.config, engine="torch", device=device), best.config.epochs),
        }  # fmt: skip
    return cases


def load_data(plan: Plan) -> C.Data:
    from digitlab import data

    ds = data.load("mnist")
    d = C.Data(ds.train.images, ds.train.labels, ds.test.images, ds.test.labels)
    return d.head(plan.n_train, plan.n_test)


def gpu_device() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else None


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure(case: str, name: str, plan: Plan, d: C.Data, device: str = "cpu") -> dict:
    """One contender: a warm-up, then `plan.repeats` timed runs (in this process)."""
    if case == "inference":
        ready = rss_mib()
        from digitlab.machine import blas_kernels

        out = C.inference(d, plan.inference_repeats, plan.latency_calls)
        return {"inference": out, "rss_ready_mib": ready, "peak_rss_mib": peak_rss_mib(),
                "blas": blas_kernels()}  # fmt: skip
    trainer, kwargs, max_epochs = lineup(plan, device)[case][name]
    warm = d.head(plan.warmup_train, min(plan.n_test, 1000))
    trainer(warm, 0, C.EpochClock(None, (), 1), **kwargs)
    ready = rss_mib()  # libraries imported, data loaded, warmed up: what training adds is beyond
    runs = []
    for seed in range(plan.repeats):
        clock = C.EpochClock(None, TARGETS[case], max_epochs)
        trainer(d, seed, clock, **kwargs)
        runs.append({"seed": seed, "epochs": [list(e) for e in clock.epochs]})
    return {"runs": runs, "rss_ready_mib": ready, "peak_rss_mib": peak_rss_mib(),
            "torch_threads": torch_threads()}  # fmt: skip


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own memory map, so a
    child of a big parent starts from zero; ru_maxrss (the fallback off Linux) does not: Linux
    carries it over from the parent through fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def torch_threads() -> int | None:
    if "torch" not in sys.modules:
        return None
    return sys.modules["torch"].get_num_threads()


def busy_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def in_child(case: str, name: str, plan: Plan, device: str, env: dict | None = None) -> dict:
    """Run one contender in a fresh `python -m benchmarks.peers` process (with `env` added to
    its environment); its JSON result, or the reason it could not run."""
    job = json.dumps({"case": case, "name": name, "plan": asdict(plan), "device": device})
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers", job], cwd=ROOT,
                          capture_output=True, text=True, env=os.environ | (env or {}))  # fmt: skip
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
        return {"skipped": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_one(case, name, plan, device, isolate, d, on_event, env=None) -> dict:
    on_event(f"{case}: {name}")
    busy, ours, started = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    if isolate:
        result = in_child(case, name, plan, device, env)
    else:
        try:
            result = measure(case, name, plan, d, device)
        except Exception as e:  # a peer that cannot run is reported, not fatal
            result = {"skipped": f"{type(e).__name__}: {e}"}
    elapsed = time.perf_counter() - started
    others = busy_cpu_seconds() - busy - (own_cpu_seconds() - ours)
    cpus = os.cpu_count() or 1
    result["wall_s"] = elapsed
    result["cpu_others_share"] = max(0.0, others) / (elapsed * cpus)
    if "runs" in result:
        result |= summarise(result["runs"], TARGETS[case])
    return result


def summarise(runs: list[dict], targets: tuple[float, ...]) -> dict:
    """Medians (min, max) over the runs: time to each target, seconds per epoch, final accuracy."""
    out: dict = {"time_to": {}}
    for target in targets:
        times = []
        for r in runs:
            spent = 0.0
            for epoch, (seconds, acc) in enumerate(r["epochs"], start=1):
                spent += seconds
                if acc is not None and acc >= target:
                    times.append((spent, epoch))
                    break
        secs = sorted(t for t, _ in times)
        # a run that stopped short counts as its whole time, a lower bound: the median over
        # all runs is then exact when the middle value is a real time above every such bound
        bounds = [sum(s for s, _ in r["epochs"]) for r in runs]
        censored = [b for b, r in zip(bounds, runs, strict=True) if not reached(r, target)]
        middle = statistics.median(sorted(secs + censored))
        exact = middle in secs and all(c > middle for c in censored)
        out["time_to"][str(target)] = {
            "median_all_s": middle,
            "median_all_exact": exact,
            "reached": len(times),
            "runs": len(runs),
            "median_s": statistics.median(secs) if secs else None,
            "min_s": secs[0] if secs else None,
            "max_s": secs[-1] if secs else None,
            "epochs": [e for _, e in times],
        }
    epoch_s = sorted(s for r in runs for s, _ in r["epochs"])
    finals = sorted(r["epochs"][-1][1] for r in runs if r["epochs"][-1][1] is not None)
    totals = sorted(sum(s for s, _ in r["epochs"]) for r in runs)
    out["epoch_s"] = statistics.median(epoch_s) if epoch_s else None
    out["total_s"] = {"median": statistics.median(totals), "min": totals[0], "max": totals[-1]}
    out["epochs_run"] = [len(r["epochs"]) for r in runs]
    out["final_acc"] = (
        {"median": statistics.median(finals), "min": finals[0], "max": finals[-1]}
        if finals
        else None
    )
    return out


def reached(run: dict, target: float) -> bool:
    return any(acc is not None and acc >= target for _, acc in run["epochs"])


def versions() -> dict:
    names = ["digitlab", "numpy", "torch", "scikit-learn", "keras", "onnx", "onnxruntime", "psutil"]
    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_slug(machine: dict) -> str:
    cpu = re.sub(r"\(r\)|\(tm\)|processor|\d+-core", "", machine["cpu"].lower())
    slug = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")
    return f"{slug}-{machine['cores']}c" + ("-gpu" if machine.get("gpu") else "")


def run(
    quick: bool = False,
    size: str | None = None,
    isolate: bool = True,
    data: C.Data | None = None,
    on_event=lambda message: print(message, file=sys.stderr, flush=True),
) -> dict:
    """Run every case; write benchmarks/results/<machine>-<date>.json and the docs section."""
    from digitlab.machine import describe, native_openblas_core

    plan = PLANS[size or ("quick" if quick else "full")]
    if data is not None:
        plan = replace(plan, n_train=len(data.x_train), n_test=len(data.x_test))
    d = None if isolate else (data or load_data(plan))
    gpu = gpu_device()
    started = time.perf_counter()
    load_before = os.getloadavg()
    cases: dict = {}
    for case, entries in lineup(plan, gpu or "cpu").items():
        if case in RECORDS_ONLY:
            continue
        device = gpu if case == "gpu" else "cpu"
        cases[case] = {n: run_one(case, n, plan, device, isolate, d, on_event) for n in entries}
    cases["inference"] = {"all": run_one("inference", "all", plan, "cpu", isolate, d, on_event)}
    native, pinned = native_openblas_core(), os.environ.get("OPENBLAS_CORETYPE")
    if isolate and native and pinned and pinned.lower() != native.lower():
        # the environment holds NumPy's OpenBLAS below this CPU (onnxruntime picks its own
        # kernels): measure again with the CPU's own, to show what that costs
        env = {"OPENBLAS_CORETYPE": native}
        cases["inference"]["native"] = run_one(
            "inference", f"OPENBLAS_CORETYPE={native}", plan, "cpu", isolate, d, on_event, env
        ) | {"coretype": native}
    if gpu is None:
        cases["gpu"] = {"skipped": "no GPU: torch.cuda.is_available() is False on this machine"}
    machine = describe()
    results = {
        "mode": plan.mode,
        "plan": asdict(plan),
        "machine": machine,
        "versions": versions(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "targets": {k: list(v) for k, v in TARGETS.items()},
        "cases": cases,
        "recipes": recipes(),
    }
    results["verdicts"] = verdicts(results)
    stem = f"{machine_slug(machine)}-{time.strftime('%Y-%m-%d')}"
    path = RESULTS_DIR / (stem + ("" if plan.mode == "full" else f"-{plan.mode}") + ".json")
    from digitlab.atomic import write_text

    write_text(path, json.dumps(results, indent=2, default=str) + "\n")
    results["results_file"] = str(path)
    save("peers", results, markdown(results))
    return results

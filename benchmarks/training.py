"""Training recipes on the 2-core CPU: accuracy and time, on the full 60,000 training images.

Recipes were chosen on the validation split; here each trains on all training images
(val_split 0) and is scored once on the test set:
- cnn-small (torch engine), 3 seeds: target ≥ 99.0% test accuracy in ≤ 20 s of training;
- the seeds' Keras recipe (784-128-64-16-10, Adam, batch 1000, 100 epochs; reported
  97.67%) on both engines, with its time;
- mlp-aug, an MLP with elastic augmentation: target ≥ 99.0%.
Training time is the sum of the epochs' wall-clock time (data stays in memory; the first
call's one-off set-up is inside it).
"""

from __future__ import annotations

import dataclasses
import statistics

from benchmarks.common import save
from digitlab import data
from digitlab.engines import get_engine
from digitlab.presets import PRESETS, RECIPES
from digitlab.train import fit


def train_and_test(ds, spec, config, engine: str, seed: int) -> dict:
    module = get_engine(engine)
    model = (
        module.build(spec, seed=seed)
        if engine == "numpy"
        else module.build(spec, seed=seed, device="cpu")
    )
    config = dataclasses.replace(config, seed=seed, val_split=0.0)
    history = fit(model, ds.train.images, ds.train.labels, config)
    loss, acc = model.evaluate(ds.test.images, ds.test.labels, config.mean, config.std)
    return {
        "engine": engine,
        "seed": seed,
        "epochs": config.epochs,
        "seconds": history.seconds,
        "test_acc": acc,
        "test_loss": loss,
    }


def run() -> dict:
    ds = data.load("mnist")
    small = PRESETS["cnn-small"]
    results = {
        "cnn_small": [train_and_test(ds, small.spec, small.config, "torch", s) for s in (0, 1, 2)],
        "keras": [
            train_and_test(ds, *RECIPES["seed-keras-128-64-16"], engine, seed)
            for engine in ("numpy", "torch")
            for seed in (0, 1, 2)
        ],
        "mlp_aug": [
            train_and_test(ds, PRESETS["mlp-aug"].spec, PRESETS["mlp-aug"].config, "torch", 0)
        ],
    }
    save("training", results, markdown(results))
    return results


def markdown(r: dict) -> str:
    small = r["cnn_small"]
    accs = [x["test_acc"] for x in small]
    secs = [x["seconds"] for x in small]
    lines = [
        "## Training recipes on the CPU (full training set, scored once on the test set)",
        "",
        "| recipe | engine | epochs | training time | test accuracy | target |",
        "|---|---|---:|---:|---:|---|",
        f"| `cnn-small`, 3 seeds | torch (CPU) | {small[0]['epochs']} | median {statistics.median(secs):.1f} s "
        f"({min(secs):.1f}–{max(secs):.1f}) | mean {statistics.mean(accs):.2%} ({min(accs):.2%}–{max(accs):.2%}) "
        "| ≥ 99.0% in ≤ 20 s |",
    ]
    for engine in ("numpy", "torch"):
        keras = [x for x in r["keras"] if x["engine"] == engine]
        accs = [x["test_acc"] for x in keras]
        median_s = statistics.median(x["seconds"] for x in keras)
        lines.append(
            f"| `seed-keras-128-64-16` (Adam, batch 1000), {len(keras)} seeds | {engine} | "
            f"{keras[0]['epochs']} | median {median_s:.1f} s | mean {statistics.mean(accs):.2%} "
            f"({min(accs):.2%}–{max(accs):.2%}) | ≥ 97.67% (the seeds' Keras run) |"
        )
    for x in r["mlp_aug"]:
        lines.append(
            f"| `mlp-aug` (784-800-800-10, elastic augmentation) | {x['engine']} | {x['epochs']} | "
            f"{x['seconds']:.1f} s | {x['test_acc']:.2%} | ≥ 99.0% |"
        )
    return "\n".join(lines)

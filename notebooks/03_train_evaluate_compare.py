# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Train, evaluate and compare
#
# digitlab was written to replace a handful of MNIST projects (the "seeds"). Two of them
# trained multilayer perceptrons:
#
# - a from-scratch network, 784-256-128-64-10, trained with plain full-batch gradient descent
#   for 150 iterations on an 80/20 split: it reported **92%** test accuracy;
# - a Keras network, 784-128-64-16-10, trained with Adam for 100 epochs: **97.67%**.
#
# Here we train both recipes exactly as the seeds did, the same 784-256-128-64-10 network with
# digitlab's own recipe (mini-batches, Nesterov momentum, a one-cycle schedule), and a small
# CNN on the PyTorch engine. Then we evaluate each on the 10,000 test images and compare them
# with a significance test. Every run is a directory (`runs/NAME/`) holding the model's spec,
# weights, history and, after evaluation, its metrics, figures and an HTML report.
#
# With `DIGITLAB_FAST=1` every model trains on 5,000 images for at most two epochs (the
# seeds' gradient descent for 10 steps), so the numbers are lower than the ones quoted here.

# %%
import dataclasses
import os
import time
from pathlib import Path

from IPython.display import Image, display

import digitlab
from digitlab import jobs
from digitlab.presets import PRESETS, RECIPES

FAST = os.environ.get("DIGITLAB_FAST") == "1"
LIMIT = 5_000 if FAST else None  # training images; None = all 60,000
RUNS = Path("runs")
ds = digitlab.load("mnist")  # opened once; every job below is given it


def quick(config, epochs: int = 2):
    """In fast mode, at most `epochs` epochs; otherwise the recipe as it is."""
    return dataclasses.replace(config, epochs=min(config.epochs, epochs)) if FAST else config


# %% [markdown]
# ## The models
#
# A model is a `ModelSpec` (layers as data) plus a `TrainConfig` (typed training settings).
# `digitlab.presets.PRESETS` holds named models with a recipe each (`digitlab models` lists
# them); `digitlab.RECIPES` holds the seeds' recipes, reproduced exactly.

# %%
for name, preset in PRESETS.items():
    print(f"{name:16} {preset.engine:6} {preset.description}")

# %%
seed_gd, seed_keras = RECIPES["seed-gd-150"], RECIPES["seed-keras-128-64-16"]
mlp, cnn = PRESETS["mlp-256-128-64"], PRESETS["cnn-small"]
contenders = {  # name: (spec, engine, training config)
    "seed-gd-150": (seed_gd[0], "numpy", quick(seed_gd[1], epochs=10)),
    "seed-keras": (seed_keras[0], "numpy", quick(seed_keras[1])),
    "mlp-256-128-64": (mlp.spec, "numpy", quick(mlp.config)),
    "cnn-small": (cnn.spec, "torch", quick(cnn.config)),
}
for name, (spec, engine, config) in contenders.items():
    print(
        f"{name:15} {engine:6} {[type(layer).__name__ for layer in spec.layers]}\n"
        f"{'':22}{config.optimizer}, lr {config.lr}, {config.schedule}, "
        f"{config.epochs} epochs of batch {config.batch_size}"
    )

# %% [markdown]
# ## Train
#
# `jobs.start` trains a spec on one engine and writes the run directory. Training holds out
# a stratified share of the training images for validation; the test set is scored once, at
# the end, and never used for a choice.

# %%
results = {}
for name, (spec, engine, config) in contenders.items():
    started = time.perf_counter()
    _, history, test = jobs.start(
        RUNS / name, spec, engine, config, ds, limit=LIMIT, overwrite=True, preset=name
    )
    results[name] = test
    print(
        f"{name:15} {engine:6} {len(history.rows):3} epochs in "
        f"{time.perf_counter() - started:5.1f} s: test accuracy {test['acc']:.2%}"
    )

# %% [markdown]
# The seeds' plain gradient descent takes one step per pass over the data; the same network
# trained with mini-batches and momentum takes hundreds of steps per pass, and gets further
# in a fraction of the time. The CNN, which knows that nearby pixels belong together, is
# the most accurate.
#
# ## Evaluate
#
# `jobs.evaluate_run` (the CLI's `digitlab evaluate RUN`) computes the metrics, draws the
# figures into `RUN/figures/` and writes `RUN/report.html`. We look at the CNN's figures.

# %%
metrics = {name: jobs.evaluate_run(RUNS / name, data=ds) for name in contenders}
for name, m in metrics.items():
    print(
        f"{name:15} accuracy {m['accuracy']:.2%}, loss {m['loss']:.3f}, "
        f"top-3 {m['top3_accuracy']:.2%}, ECE {m['ece']:.3f}"
    )


def figure(run: str, name: str) -> None:
    display(Image(filename=str(RUNS / run / "figures" / f"{name}.png")))


# %% [markdown]
# **Confusion matrix.** Rows are the true digits, columns the predictions; everything off the
# diagonal is a mistake. The usual suspects are 4↔9, 3↔5, 7↔2.

# %%
figure("cnn-small", "confusion")

# %% [markdown]
# **Learning curves.** Training and validation loss and accuracy per epoch. A validation
# curve that turns up while training keeps falling would mean overfitting. The training loss
# sits above the validation loss here: the recipe trains with label smoothing (0.1), which
# keeps the training targets away from 0 and 1, so its training loss can never reach 0.

# %%
figure("cnn-small", "learning_curves")

# %% [markdown]
# **Per-class accuracy** and **the most confident mistakes**.

# %%
figure("cnn-small", "per_class")
figure("cnn-small", "mistakes")

# %% [markdown]
# **The most confusable pairs**, with examples of each, and the **reliability diagram**:
# when the model says 90%, is it right 90% of the time? The expected calibration error (ECE)
# is the average gap. Label smoothing makes a model underconfident, which shows as bars above
# the diagonal; `digitlab evaluate RUN --calibrate` fits a temperature on the validation
# split to close the gap.

# %%
figure("cnn-small", "confusable")
figure("cnn-small", "reliability")

# %% [markdown]
# ## Compare
#
# `jobs.compare_runs` (`digitlab compare RUN RUN ...`) puts the runs side by side: model,
# engine, parameters, training time, inference speed and test accuracy. For each pair it runs
# McNemar's exact test on the same test images: it counts the images that one model gets
# right and the other wrong, and asks whether that split could be chance. A small p-value
# means the difference in accuracy is real, not luck of the test set.

# %%
comparison = jobs.compare_runs(
    [RUNS / name for name in contenders], RUNS / "compare", ds, overwrite=True
)
print(f"{'run':15} {'engine':6} {'params':>9} {'train s':>8} {'images/s':>10} {'accuracy':>9}")
for r in comparison["runs"]:
    print(
        f"{r['name']:15} {r['engine']:6} {r['params']:9,} {r['train_seconds']:8.1f} "
        f"{r['images_per_s']:10,.0f} {r['accuracy']:9.2%}"
    )
print()
for t in comparison["mcnemar"]:  # b: only the first is right, c: only the second
    print(
        f"{t['first']:15} vs {t['second']:15} {t['b']:5} vs {t['c']:5} images, "
        f"p = {t['p_value']:.2g}"
    )

# %%
display(Image(filename=str(RUNS / "compare" / "figures" / "learning_curves.png")))

# %% [markdown]
# Every run directory now holds a `report.html` with all of the above, and
# `runs/compare/report.html` holds the comparison: one file each, images inlined, readable
# offline. From the command line, the whole of this notebook is:
#
# ```bash
# digitlab train --recipe seed-gd-150 --out runs/seed-gd-150
# digitlab train --model cnn-small --out runs/cnn-small
# digitlab evaluate runs/cnn-small
# digitlab compare runs/seed-gd-150 runs/cnn-small
# ```
#
# and `digitlab run` trains, evaluates and compares an MLP and a CNN in one go.
#
# Next: [4. Your own digits](04_your_own_digits.ipynb).

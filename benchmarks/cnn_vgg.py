"""The best single network (issue 19: ≥ 99.70% on MNIST test, mean of 3 seeds, ≤ 15 minutes a
seed on the CPU) and ensembles of it (issue 18: ≥ 99.75% with at most 5 networks).

    python -m benchmarks cnn_vgg      # trains the members missing from runs/bench-cnn-vgg/

Slow: a `cnn-vgg` network takes about 8 minutes to train on 2 cores; finished members are
reused, so an interrupted pass continues (`digitlab train --model cnn-vgg --seed S
--split-seed 0 --out runs/bench-cnn-vgg/cnn-vgg-S` trains one the same way). Every seed holds
out the same 10% of the training images, on which test-time augmentation is chosen or not;
the test set is scored, never used to choose.

Then the final fit, as is usual once validation has chosen: the ensemble of 5 it chose, with
or without test-time augmentation as it chose, trained again on all 60,000 training images
(`--val-split 0`, runs/bench-cnn-vgg/cnn-vgg[-elastic]-full-S) and scored on test once. These
members hold nothing out, so no temperature is fitted for them (1.0) and nothing is chosen.

Last, tried after those ensembles missed 99.75%: the same recipe trained twice as long (LONG
epochs, seeds 0-2, runs/bench-cnn-vgg/cnn-vgg-eLONG-S, about 17 minutes each). Its ensemble of
3 counts only if it reads at least as many validation digits as the best of the others.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.common import save
from benchmarks.ensembles import (
    DEGRADED,
    SEEDS,
    combined,
    degraded_of,
    measure,
    member,
    scores,
    tta_lines,
    with_tta,
)
from digitlab import data, jobs, runs
from digitlab.engines import logits

WORK = Path("runs/bench-cnn-vgg")
SINGLE = 3  # the single-network figure: the mean of the first 3 seeds
# members that differ: the same layers and recipe with elastic augmentation; the ensemble of 5
# is either seeds 0-4 or seeds 0-2 with these two, whichever reads more validation digits
ELASTIC = (5, 6)
LONG = 30  # epochs of the longer members (the preset: 15)
NAMES = {
    "3": "3: seeds 0-2",
    "5": "5: seeds 0-4",
    "mixed": "5: seeds 0-2 and the 2 elastic",
    "long": f"3: seeds 0-2, {LONG} epochs",
}


def run() -> dict:
    ds = data.load("mnist")
    affine = [member(seed, ds, WORK, "cnn-vgg") for seed in SEEDS]
    elastic = [member(seed, ds, WORK, "cnn-vgg", "elastic") for seed in ELASTIC]
    degraded = degraded_of(affine[0], ds)
    results = measure(affine, ds, WORK, degraded)
    results["elastic"] = [scores(f, ds, degraded) for f in elastic]
    for folder, row in zip(affine + elastic, results["members"] + results["elastic"], strict=True):
        row["tta"] = with_tta(folder, ds)
    mixed = combined(affine[:3] + elastic, WORK / "ensemble-mixed", ds, degraded)
    results["ensembles"]["mixed"] = mixed
    results["full"] = final_fit(results["ensembles"], ds)
    longer = [member(seed, ds, WORK, "cnn-vgg", epochs=LONG) for seed in SEEDS[:3]]
    results["long"] = [scores(f, ds, degraded) | {"tta": with_tta(f, ds)} for f in longer]
    results["ensembles"]["long"] = combined(longer, WORK / f"ensemble-e{LONG}", ds, degraded)
    save("cnn_vgg", results, markdown(results))
    return results


def markdown(r: dict) -> str:
    m, elastic = r["members"], r.get("elastic", [])
    rows = [member_row(str(seed), x) for seed, x in enumerate(m)]
    rows += [member_row(f"{seed}, elastic", x) for seed, x in zip(ELASTIC, elastic, strict=False)]
    rows += [member_row(f"{seed}, {LONG} epochs", x) for seed, x in enumerate(r.get("long", []))]
    first = m[:SINGLE]
    mean = round(statistics.mean(x["test"] for x in first), 4)  # judged as shown
    slowest = max(x["seconds"] or float("inf") for x in first) / 60
    met = "**yes**" if mean >= 0.997 and slowest <= 15 else "**no**"
    tta_val = statistics.mean(x["tta"]["val"] for x in first)
    val = statistics.mean(x["val"] for x in first)
    chosen = "with `--tta`" if tta_val > val else "without test-time augmentation"
    tta_mean = statistics.mean(x["tta"]["test"] for x in first)
    ensembles = r["ensembles"]
    members = {"3": m[:3], "5": m[:5], "mixed": m[:3] + elastic, "long": r.get("long", [])}
    fives = [k for k in ("5", "mixed") if k in ensembles]
    best = chosen_five(ensembles)
    ens = []
    for k, e in ensembles.items():
        tests = [x["test"] for x in members[k]]
        verdict = "**yes**" if round(e["test"], 4) >= 0.9975 else "**no**"
        pick = ("chosen" if k == best else "not chosen") if k in fives and len(fives) > 1 else ""
        if k == "long":  # tried last: it counts only where validation prefers it
            others = max(x["val"] for j, x in ensembles.items() if j != "long")
            pick = "chosen" if e["val"] >= others else "not chosen"
        if pick == "not chosen":  # what validation did not choose does not meet the target
            verdict = f"not counted ({'reached' if verdict == '**yes**' else 'missed'})"
        ens.append(
            f"| {NAMES[k]} | {statistics.mean(tests):.2%} ({min(tests):.2%}–{max(tests):.2%}) "
            f"| {e['val']:.2%} | {pick} | **{e['test']:.2%}** | {e['degraded']:.2%} | ≥ 99.75% "
            f"| {verdict} |"
        )
    return "\n".join(
        [
            "## The best single network and its ensembles on the CPU (issues 19 and 18)",
            "",
            "`digitlab train --model cnn-vgg`: two 3×3 convolutions per block (32, 64, 128) with "
            "batch norm, affine augmentation, 15 epochs. Seeds 0-4, and two more (seeds "
            f"{', '.join(map(str, ELASTIC))}) trained with `--augment elastic` to err "
            "differently, every one holding out the same 5,999 training images "
            "(`--split-seed 0`). `--tta`: each digit and its 4 one-pixel shifts. Degraded: "
            f"{DEGRADED:,} validation digits with the reading benchmark's faults.",
            "",
            "| seed | training | MNIST test | test, `--tta` | validation | validation, `--tta` | "
            "degraded |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "| figure | measured | target | met |",
            "|---|---|---|---|",
            f"| best single network: mean of seeds 0-{SINGLE - 1}, MNIST test | **{mean:.2%}** "
            f"(slowest seed {slowest:.1f} min) | ≥ 99.70%, ≤ 15 min a seed | {met} |",
            f"| the same with `--tta` (validation: {tta_val:.2%} against {val:.2%}; chosen "
            f"{chosen}) | {tta_mean:.2%} | measured, no target | |",
            "",
            "Ensembles (the mean of their members' calibrated probabilities). Of the two "
            "ensembles of 5, the one that reads more of the validation digits is chosen before "
            "the test set is scored (a tie goes to seeds 0-4, the plain one). The members "
            f"trained for {LONG} epochs were tried after the others missed; their ensemble "
            "counts only if it reads at least as many validation digits as the best of the "
            "others:",
            "",
            "| members | members, MNIST test | ensemble, validation | chosen | ensemble, "
            "MNIST test | ensemble, degraded | target (test) | met |",
            "|---|---:|---:|---|---:|---:|---|---|",
            *ens,
            *tta_lines(ensembles, {"long": NAMES["long"]}),
            *full_lines(r.get("full")),
        ]
    )


def chosen_five(ensembles: dict) -> str:
    """The ensemble of 5 that reads more validation digits; the first of equals: seeds 0-4."""
    return max((k for k in ("5", "mixed") if k in ensembles), key=lambda k: ensembles[k]["val"])


def final_fit(ensembles: dict, ds) -> dict:
    """The chosen ensemble of 5 trained again on all 60,000 training images and scored on test,
    with test-time augmentation when validation chose it for the ensemble."""
    pick = chosen_five(ensembles)
    tta = ensembles[pick]["tta"]["val"] > ensembles[pick]["val"]
    folders = [member(seed, ds, WORK, "cnn-vgg", whole=True) for seed in SEEDS[:3]]
    if pick == "mixed":
        folders += [member(seed, ds, WORK, "cnn-vgg", "elastic", whole=True) for seed in ELASTIC]
    else:
        folders += [member(seed, ds, WORK, "cnn-vgg", whole=True) for seed in SEEDS[3:5]]
    info = jobs.make_ensemble(folders, WORK / "ensemble-full", data=ds, overwrite=True)
    test = info["test"]["acc"]
    if tta:
        z = logits(runs.load_model(WORK / "ensemble-full"), ds.test.images, tta=True)
        test = float((z.argmax(1) == ds.test.labels).mean())
    members = []
    for folder in folders:
        x = runs.read_info(folder)
        members.append(
            {"run": str(folder), "test": x["test"]["acc"], "seconds": x["training"]["seconds"]}
        )
    return {"of": pick, "tta": tta, "members": members, "test": test}


def full_lines(full: dict | None) -> list[str]:
    """The final fit (final_fit): the chosen ensemble on all 60,000 training images."""
    if not full:
        return []
    tests = [x["test"] for x in full["members"]]
    minutes = statistics.median(x["seconds"] for x in full["members"]) / 60
    met = "**yes**" if round(full["test"], 4) >= 0.9975 else "**no**"
    tta = "with `--tta`" if full["tta"] else "without `--tta`"
    return [
        "",
        f"The final fit: the chosen ensemble ({NAMES[full['of']]}, {tta}, as validation chose) "
        "trained again on all 60,000 training images (`--val-split 0`: nothing held out, so "
        f"nothing chosen and no temperature fitted), median {minutes:.1f} min a member, scored "
        "on test once:",
        "",
        "| members | members, MNIST test | ensemble, MNIST test | target | met |",
        "|---|---:|---:|---|---|",
        f"| {NAMES[full['of']]}, all 60,000 images | {statistics.mean(tests):.2%} "
        f"({min(tests):.2%}–{max(tests):.2%}) | **{full['test']:.2%}** | ≥ 99.75% | {met} |",
    ]


def member_row(seed: str, x: dict) -> str:
    minutes = f"{x['seconds'] / 60:.1f} min" if x["seconds"] else "-"
    return (
        f"| {seed} | {minutes} | {x['test']:.2%} | {x['tta']['test']:.2%} | {x['val']:.2%} | "
        f"{x['tta']['val']:.2%} | {x['degraded']:.2%} |"
    )

"""The compare job: table, seed statistics, McNemar tests and overlaid learning curves.

>>> result = compare_runs(["runs/mlp", "runs/cnn"], "runs/compare")
>>> result["mcnemar"][0]["p_value"]
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from digitlab import evaluate as ev
from digitlab import plots, report, runs
from digitlab.atomic import json_safe, write_bytes, write_text
from digitlab.data import Dataset
from digitlab.errors import DigitlabError
from digitlab.jobs.evaluate import Evaluation, _pct, evaluation, provenance, split_data
from digitlab.jobs.train import run_dataset
from digitlab.train import TrainConfig

OUTPUTS = ("comparison.json", "report.html")  # what an earlier comparison leaves in --out


def compare_runs(
    run_dirs: list[str | Path],
    out: str | Path,
    data: Dataset | None = None,
    *,
    overwrite: bool = False,
    evaluated: dict[Path, Evaluation] | None = None,
    on_event=None,
) -> dict:
    """Table, seed statistics, McNemar tests and overlaid learning curves for several runs.

    `data` is their dataset when the caller has it open; `evaluated` holds evaluations the
    caller has just made (the main job), so nothing is predicted twice. An earlier comparison
    in `out` is replaced only with `overwrite`."""
    if len(run_dirs) < 2:
        raise DigitlabError("compare needs at least two runs")
    if len({Path(r).resolve() for r in run_dirs}) < len(run_dirs):
        raise DigitlabError("compare: the same run is given twice")
    out = Path(out)
    if out.exists() and not out.is_dir():  # found before every run is evaluated, not after
        raise DigitlabError(f"--out {out}: exists and is not a folder")
    if (out / "model.json").exists():
        raise DigitlabError(
            f"--out {out}: is a training run; choose another folder for the comparison"
        )
    earlier = next((out / n for n in OUTPUTS if (out / n).exists()), None)
    if earlier is not None and not overwrite:
        raise DigitlabError(
            f"--out {out}: holds an earlier comparison ({earlier.name}); pass --overwrite to "
            "replace it, or choose another --out"
        )
    infos = {Path(r): runs.read_info(r) for r in run_dirs}  # each model.json read once
    first, first_info = next(iter(infos.items()))
    for other, info in infos.items():
        if info["data"]["dataset"] != first_info["data"]["dataset"]:
            raise DigitlabError(
                f"compare: {other} was trained on {info['data']['dataset']}, "
                f"{first} on {first_info['data']['dataset']}"
            )
        runs.require_finished(other, info)
    ds = run_dataset(first_info, data, on_event)
    _, labels = split_data(first_info, "test", ds)
    evaluated = {Path(k): v for k, v in (evaluated or {}).items()}
    names = display_names(list(infos))
    entries = []
    for run, info in infos.items():
        if run not in evaluated:
            evaluated[run] = evaluation(run, "test", data=ds)
        m, predicted = evaluated[run].metrics, evaluated[run].predicted
        correct = predicted == labels
        entries.append(
            {
                "run": str(run),
                "name": names[run],
                "model": info["spec"].get("name") or run.name,
                "spec": info["spec"],
                "engine": info["engine"],
                "params": info["num_params"],
                "train_seconds": info["training"]["seconds"],
                "accuracy": m["accuracy"],
                "loss": m["loss"],
                "images_per_s": m["inference_images_per_s"],
                "history": runs.read_history(run).rows,
                "correct": correct,
            }
        )
    groups: dict[str, list[dict]] = {}
    for e, info in zip(entries, infos.values(), strict=True):
        groups.setdefault(seed_group(info), []).append(e)
    seeds = [
        {
            "model": g[0]["model"],
            "engine": g[0]["engine"],
            "runs": len(g),
            "accuracy": ev.mean_std([e["accuracy"] for e in g]),
            "loss": ev.mean_std([e["loss"] for e in g]),
        }
        for g in groups.values()
        if len(g) > 1
    ]
    tests = [
        {"first": a["name"], "second": b["name"], **ev.mcnemar(a["correct"], b["correct"])}
        for a, b in combinations(entries, 2)
    ]
    curves = plots.figure_bytes(plots.learning_curves({e["name"]: e["history"] for e in entries}))
    result = {
        "runs": [
            {k: v for k, v in e.items() if k not in ("history", "correct", "spec")} for e in entries
        ],
        "seeds": seeds,
        "mcnemar": tests,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "figures" / "learning_curves.png", curves)
    write_text(out / "comparison.json", json.dumps(json_safe(result), indent=2) + "\n")
    write_text(
        out / "report.html",
        report.render(
            title="Comparison",
            subtitle=f"{len(entries)} runs on the same test set",
            sections=compare_sections(result, curves),
            provenance=[
                (
                    "compare again",
                    "digitlab compare "
                    + " ".join(map(str, run_dirs))
                    + f" --out {out} --overwrite",
                ),
                *[
                    (k, v)
                    for k, v in provenance(first, first_info)
                    if k in ("machine", "software", "digitlab")
                ],
            ],
        ),
    )
    return result | {"figures": {"learning_curves": curves}}  # PNG bytes, not for JSON


def seed_group(info: dict) -> str:
    """Runs are seeds of one experiment when all but their seed is the same: spec, engine,
    data (and its limit) and every training setting."""
    config = TrainConfig.from_dict(info["train_config"]).to_dict()  # old runs' missing fields
    del config["seed"]  # and with it the split, unless split_seed holds one fixed
    data = {k: info["data"].get(k) for k in ("dataset", "ref", "limit")}
    same = {"spec": info["spec"], "engine": info["engine"], "config": config, "data": data}
    return json.dumps(same, sort_keys=True)


def compare_sections(result: dict, curves: bytes) -> list[dict]:
    s = report.section
    rows = [
        [
            e["name"],
            e["model"],
            e["engine"],
            f"{e['params']:,}",
            f"{e['train_seconds']:.1f} s",
            f"{e['images_per_s']:,.0f}",
            _pct(e["accuracy"]),
            f"{e['loss']:.4f}",
        ]
        for e in result["runs"]
    ]
    sections = [
        s(
            "Runs",
            table=(
                [
                    "run",
                    "model",
                    "engine",
                    "parameters",
                    "training time",
                    "inference images/s",
                    "test accuracy",
                    "test loss",
                ],
                rows,
            ),
        )
    ]
    if result["seeds"]:
        sections.append(
            s(
                "Across seeds",
                table=(
                    ["model", "engine", "runs", "accuracy (mean ± sd)"],
                    [
                        [
                            g["model"],
                            g["engine"],
                            g["runs"],
                            f"{g['accuracy']['mean']:.2%} ± {g['accuracy']['std']:.2%}",
                        ]
                        for g in result["seeds"]
                    ],
                ),
            )
        )
    sections.append(
        s(
            "Do they differ? McNemar's test",
            text="b = images the first run gets right and the second wrong; c = the reverse. "
            "A small p "
            "(below 0.05) means the two models' errors differ by more than chance.",
            table=(
                ["first", "second", "b", "c", "p"],
                [
                    [t["first"], t["second"], t["b"], t["c"], f"{t['p_value']:.3g}"]
                    for t in result["mcnemar"]
                ],
            ),
        )
    )
    sections.append(
        s("Learning curves", figures=[("loss and accuracy per epoch, all runs", curves)])
    )
    return sections


def display_names(paths: list[Path]) -> dict[Path, str]:
    """Each run's name in the table, the tests and the curves: its folder's name, with as many
    parent folders as make it unique (exp1/mlp and exp2/mlp were one 'mlp', one curve)."""
    for depth in range(1, max(len(p.resolve().parts) for p in paths) + 1):
        names = {p: "/".join(p.resolve().parts[-depth:]) for p in paths}
        if len(set(names.values())) == len(paths):
            return names
    return {p: str(p) for p in paths}

"""The sweep's summary and report: sweep.json (every trial, the best and its test score,
measured once), and sweep.html with the trials, Optuna's optimisation history and parameter
importances (Optuna's own matplotlib plots) and a link to the best run's report."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

from digitlab import report
from digitlab.atomic import write_json, write_text
from digitlab.jobs.evaluate import evaluate_run


def png_of(axes) -> bytes:
    import matplotlib.pyplot as plt

    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    buffer = io.BytesIO()
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def figures_of(study) -> list[tuple[str, bytes]]:
    """Optuna's plots, where the study has enough trials to draw them."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if done:
            out.append(("optimisation history", png_of(plots.plot_optimization_history(study))))
        if len(done) >= 2 and any(t.params for t in done):
            with contextlib.suppress(ValueError, RuntimeError):  # e.g. all drew the same values
                out.append(("parameter importances", png_of(plots.plot_param_importances(study))))
    return out


def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def write_report(study, summary: dict, out: Path) -> str:
    rows = [
        [
            str(r["number"]),
            r["state"].lower(),
            pct(r["val_acc"]),
            r["model"] or "",
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in r["params"].items()
            ),
            f"{r['epochs_trained'] or 0}/{r['epochs_planned'] or '?'}",
            "" if r["seconds"] is None else f"{r['seconds']:.0f} s",
        ]
        for r in summary["trials"]
    ]
    best = summary["best"]
    links = []
    headline = [(k.lower(), str(v)) for k, v in summary["counts"].items()]
    if best:
        run = Path(best["run"])
        if (run / "report.html").exists():
            inside = run.resolve().is_relative_to(out.resolve())
            href = (
                str(run.resolve().relative_to(out.resolve()) / "report.html")
                if inside
                else (run / "report.html").as_uri()
            )
            links.append((f"the best run's report (trial {best['number']})", href))
        headline = [
            ("best validation", pct(best["val_acc"])),
            ("its test", pct(best["test_acc"])),
            *headline,
        ]
    epochs = summary["epochs"]
    saved = 1 - epochs["trained"] / epochs["planned"] if epochs["planned"] else 0.0
    text = (
        f"{len(rows)} trials. The objective is validation accuracy; trials never saw the test "
        f"split, which scored the best trial once. Pruning trained {epochs['trained']} of "
        f"{epochs['planned']} planned epochs ({saved:.0%} saved)."
    )
    header = ["trial", "state", "validation", "model", "settings", "epochs", "time"]
    return report.render(
        title=f"sweep {summary['name']}",
        subtitle=f"space {summary['space']}",
        headline=headline,
        sections=[
            report.section("Best", text, links=links),
            report.section("Trials", table=(header, rows)),
            report.section("Search", figures=figures_of(study)),
        ],
        provenance=[("run again", summary.get("command") or f"digitlab sweep {summary['space']}")],
    )


def summarise(
    study, space, out: Path, data, on_event=None, trials: int | None = None, storage=None
) -> dict:
    """sweep.json and sweep.html: every trial, the best, and its test score (measured once);
    `trials` and `storage`: what the command was given (for the command that continues it)."""
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    done = [r for r in rows if r["state"] == "COMPLETE"]
    states = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
    summary = {
        "name": space.name,
        "space": str(space.path),
        "command": command_of(space, out, trials, storage),
        "trials": rows,
        "counts": {s: sum(r["state"] == s for r in rows) for s in states},
        "epochs": {
            "planned": sum(r["epochs_planned"] or 0 for r in rows),
            "trained": sum(r["epochs_trained"] or 0 for r in rows),
        },
        "best": None,
    }
    if done:
        best = max(done, key=lambda r: r["val_acc"])
        run = Path(best["run"])
        test = None
        if (run / "model.json").exists():  # a trial of this machine: score it on test, once
            metrics_file = run / "metrics.json"
            if not metrics_file.exists():
                evaluate_run(run, data=data, on_event=on_event)
            test = json.loads(metrics_file.read_text())["accuracy"]
        summary["best"] = best | {"test_acc": test}
    write_json(out / "sweep.json", summary)
    write_text(out / "sweep.html", write_report(study, summary, out))
    return summary | {"report": str(out / "sweep.html")}


LIMIT_MARK = "\n# --limit "  # how a command-line --limit is kept in the study's space text


def split_limit(text: str) -> tuple[str, str | None]:
    """A study's space text: the space file's, and the --limit the command line added (None)."""
    space, _, limit = text.partition(LIMIT_MARK)
    return space, limit.strip() or None


def command_of(space, out: Path, trials: int | None, storage: str | None) -> str:
    """The command that continues this sweep: what it was started with (a database's URL, which
    may hold a password, is not written down)."""
    words = ["digitlab sweep", str(space.path), "--out", str(out)]
    if trials and trials != space.trials:
        words += ["--trials", str(trials)]
    if split_limit(space.text)[1]:
        words += ["--limit", str(space.limit)]
    if storage:
        words += ["--storage", "DATABASE_URL"]
    return " ".join(words)


def trial_row(t) -> dict:
    return {
        "number": t.number,
        "state": t.state.name,
        "val_acc": t.value,
        "params": t.params,
        "model": t.user_attrs.get("model"),
        "run": t.user_attrs.get("run"),
        "host": t.user_attrs.get("host"),
        "epochs_planned": t.user_attrs.get("epochs_planned"),
        "epochs_trained": t.user_attrs.get("epochs_trained"),
        "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None,
    }

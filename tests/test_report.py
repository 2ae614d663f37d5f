"""evaluate, compare and the main job write self-contained reports on real runs."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digitlab import jobs, runs
from digitlab import spec as S
from digitlab.train import TrainConfig

FIGURES = {"confusion", "learning_curves", "per_class", "mistakes", "confusable", "reliability"}


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.urls = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if tag == "img" and name == "src":
                self.images.append(value)
            elif name in ("href", "src") and value:
                self.urls.append(value)


def assert_self_contained(path: Path, min_images: int, links: int = 0) -> Collector:
    """Nothing fetched or run; every image inside; `links` relative links to reports beside it,
    each of which exists."""
    html = path.read_text()
    parsed = Collector()
    parsed.feed(html)
    parsed.close()
    assert parsed.tags[0] == "html" and "body" in parsed.tags
    assert (
        "script" not in parsed.tags and "link" not in parsed.tags
    )  # nothing executable or fetched
    assert len(parsed.images) >= min_images
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    reports = [u for u in parsed.urls if u.endswith(".html") and "://" not in u]
    assert len(reports) == links and all((path.parent / u).is_file() for u in reports), reports
    others = [u for u in parsed.urls if u not in reports]
    assert all(u.startswith(("#", "data:")) for u in others), others
    assert "http://" not in html and "https://" not in html
    return parsed


@pytest.fixture(scope="module")
def two_runs(mnist_home, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_HOME", str(mnist_home))
        folder = tmp_path_factory.mktemp("runs")
        config = TrainConfig(epochs=2, val_split=0.1, lr=0.1, label_smoothing=0.1)
        for seed in (0, 1):
            jobs.start(
                folder / f"mlp-{seed}",
                S.mlp([64], name="mlp-64"),
                "numpy",
                TrainConfig(**{**config.to_dict(), "seed": seed}),
                limit=3000,
            )
        yield folder


def test_evaluate_writes_metrics_figures_and_a_report(two_runs, mnist):
    run = two_runs / "mlp-0"
    m = jobs.evaluate_run(run)
    saved = json.loads((run / "metrics.json").read_text())
    assert (
        saved["accuracy"] == m["accuracy"] > 0.85
        and saved["split"] == "test"
        and saved["n"] == 10000
    )
    assert len(saved["per_class"]) == 10 and len(saved["confusion"]) == 10
    info = json.loads((run / "model.json").read_text())  # the same test set, the same figures
    assert info["temperature"] != 1 and info["test"]["acc"] == m["accuracy"]
    assert info["test"]["loss"] == pytest.approx(m["loss"], rel=1e-5)
    assert {p.stem for p in (run / "figures").glob("*.png")} == FIGURES
    assert_self_contained(run / "report.html", len(FIGURES))
    assert "mlp-64 on mnist" in (run / "report.html").read_text()


def test_calibration_is_fitted_on_validation_and_used_afterwards(two_runs, mnist):
    run = two_runs / "mlp-1"
    m = jobs.evaluate_run(run, calibrate=True)
    info = json.loads((run / "model.json").read_text())
    assert info["temperature"] == m["temperature"] != 1.0
    assert m["ece"] <= m["ece_uncalibrated"] + 0.005
    assert jobs.evaluate_run(run)["temperature"] == info["temperature"]  # kept for later
    test_metrics = (run / "metrics.json").read_text()
    val = jobs.evaluate_run(run, split="val")
    assert val["split"] == "val" and val["n"] == 300
    assert (run / "metrics.json").read_text() == test_metrics  # the test split's file is untouched
    assert json.loads((run / "metrics-val.json").read_text())["split"] == "val"
    assert (run / "report-val.html").exists() and (run / "figures" / "confusion-val.png").exists()


def test_compare_two_seeds(two_runs, tmp_path, mnist):
    result = jobs.compare_runs([two_runs / "mlp-0", two_runs / "mlp-1"], tmp_path / "cmp")
    assert [r["name"] for r in result["runs"]] == ["mlp-0", "mlp-1"]
    assert result["seeds"][0]["runs"] == 2 and 0 <= result["seeds"][0]["accuracy"]["std"] < 0.05
    test = result["mcnemar"][0]
    assert (test["first"], test["second"]) == ("mlp-0", "mlp-1") and 0 <= test["p_value"] <= 1
    assert_self_contained(tmp_path / "cmp" / "report.html", 1)
    assert (
        json.loads((tmp_path / "cmp" / "comparison.json").read_text())["mcnemar"][0]["b"]
        == test["b"]
    )
    for exp, seed in (("exp1", 0), ("exp2", 1)):  # two runs of one name in two experiments
        shutil.copytree(two_runs / f"mlp-{seed}", tmp_path / exp / "mlp")
    both = [tmp_path / "exp1" / "mlp", tmp_path / "exp2" / "mlp"]
    result = jobs.compare_runs(both, tmp_path / "cmp2")  # were one 'mlp', one curve
    assert [r["name"] for r in result["runs"]] == ["exp1/mlp", "exp2/mlp"]


def test_the_main_job_in_fast_mode(mnist, tmp_path):
    result = jobs.main_job(tmp_path / "main", quick=True, limit=2000)
    assert set(result["accuracy"]) == {"mlp-256-128-64-numpy", "cnn-small-torch"}
    assert all(acc > 0.65 for acc in result["accuracy"].values())  # measured 0.76 and 0.80
    # data, 3 per model, curves; a link to each model's own report
    parsed = assert_self_contained(Path(result["report"]), 1 + 2 * 3 + 1, links=2)
    assert len(parsed.images) == 8


def test_evaluate_errors(two_runs, tmp_path):
    from digitlab.errors import DigitlabError

    with pytest.raises(DigitlabError, match="--split 'train'"):
        jobs.evaluate_run(two_runs / "mlp-0", split="train")
    with pytest.raises(runs.RunError, match="no such run directory"):
        jobs.evaluate_run(tmp_path / "nope")
    with pytest.raises(DigitlabError, match="at least two runs"):
        jobs.compare_runs([two_runs / "mlp-0"], tmp_path / "c")


def test_compare_prints_each_runs_model_and_loss_as_the_readme_says(two_runs, tmp_path, mnist):
    from typer.testing import CliRunner

    from digitlab.cli import app

    runs_given = [str(two_runs / "mlp-0"), str(two_runs / "mlp-1")]
    result = CliRunner().invoke(app, ["compare", *runs_given, "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    header, first = result.stdout.splitlines()[:2]
    assert header.split()[:3] == ["run", "model", "engine"] and header.split()[-1] == "loss"
    saved = json.loads((tmp_path / "c" / "comparison.json").read_text())["runs"][0]
    assert first.split()[1] == saved["model"] == "mlp-64"
    assert float(first.split()[-1]) == pytest.approx(saved["loss"], abs=1e-4)


def test_compare_refuses_mixed_datasets_duplicates_and_run_folders(two_runs, tmp_path, mnist):
    from digitlab.errors import DigitlabError

    fashion = tmp_path / "fashion"
    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        jobs.start(fashion, S.mlp([8]), "numpy", TrainConfig(epochs=1), "fashion-mnist", limit=500)
        with pytest.raises(DigitlabError, match="was trained on fashion-mnist"):
            jobs.compare_runs([two_runs / "mlp-0", fashion], tmp_path / "c")
    with pytest.raises(DigitlabError, match="the same run is given twice"):
        jobs.compare_runs([two_runs / "mlp-0", two_runs / "mlp-0"], tmp_path / "c")
    with pytest.raises(DigitlabError, match="is a training run"):
        jobs.compare_runs([two_runs / "mlp-0", two_runs / "mlp-1"], two_runs / "mlp-1")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DigitlabError, match="afile: exists and is not a folder"):
        jobs.compare_runs([two_runs / "mlp-0", two_runs / "mlp-1"], afile)

"""Ensembles: finished runs as one run directory, the mean of the members' calibrated
probabilities, read by evaluate, compare, predict and serve like any run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitlab import evaluate as ev
from digitlab import jobs, runs
from digitlab.errors import DigitlabError
from digitlab.jobs.ensemble import top_of_sweep
from digitlab.predict import Predictor
from digitlab.spec import mlp
from digitlab.train import TrainConfig


@pytest.fixture(scope="module")
def members(mnist_home, tmp_path_factory):
    """Three small MLPs of different widths and seeds, each calibrated on its validation split."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_HOME", str(mnist_home))
        folder = tmp_path_factory.mktemp("members")
        paths = []
        for i, width in enumerate((24, 32, 40)):
            config = TrainConfig(epochs=1, seed=i, val_split=0.1)
            jobs.start(folder / f"m{i}", mlp([width]), "numpy", config, limit=3000)
            paths.append(folder / f"m{i}")
        yield paths


def test_an_ensemble_is_the_mean_of_its_members_calibrated_probabilities(members, mnist, tmp_path):
    info = jobs.make_ensemble(members, tmp_path / "ens", data=mnist)
    assert info["kind"] == "ensemble" and len(info["members"]) == 3
    images = mnist.test.images[:500]
    expected = np.mean([Predictor(m).probabilities(images) for m in members], axis=0)
    got = Predictor(tmp_path / "ens").probabilities(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    model = runs.load_model(tmp_path / "ens", engine="numpy")
    acc = (
        model.normalised_logits(ev_normalised(images)).argmax(1) == mnist.test.labels[:500]
    ).mean()
    assert acc == pytest.approx((expected.argmax(1) == mnist.test.labels[:500]).mean())
    member_acc = [m["test"]["acc"] for m in info["members"]]
    assert info["test"]["acc"] >= np.mean(member_acc) - 0.005  # averaging does not hurt
    pytest.importorskip("torch")  # the same ensemble on the other engine answers the same
    on_torch = runs.load_model(tmp_path / "ens", engine="torch")
    from digitlab.engines import logits

    np.testing.assert_allclose(ev.softmax(logits(on_torch, images), 1.0), got, atol=1e-4)


def ev_normalised(images):
    from digitlab.preprocess import normalise

    return normalise(images[:, None], 0.1307, 0.3081)


def test_evaluate_compare_predict_and_export_read_an_ensemble_like_a_run(
    members, mnist, tmp_path, mlp_run
):
    jobs.make_ensemble(members[:2], tmp_path / "ens", data=mnist)
    metrics = jobs.evaluate_run(tmp_path / "ens", data=mnist)
    assert 0.5 < metrics["accuracy"] < 1 and (tmp_path / "ens" / "report.html").exists()
    test = json.loads((tmp_path / "ens" / "model.json").read_text())["test"]
    assert test["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    result = jobs.compare_runs([members[0], tmp_path / "ens"], tmp_path / "cmp", mnist)
    assert (tmp_path / "cmp" / "report.html").exists() and len(result["runs"]) == 2
    answer = Predictor(tmp_path / "ens").read(mnist.test.images[0])
    assert answer["label"] == "7"
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    done = jobs.export_onnx(tmp_path / "ens", tmp_path / "e.onnx", data=mnist)  # one graph
    assert done["agree"] and done["label_disagreements"] == 0 and (tmp_path / "e.onnx").exists()


def test_bad_ensembles_are_refused_in_one_line(members, mnist, tmp_path):
    with pytest.raises(DigitlabError, match="at least two runs"):
        jobs.make_ensemble(members[:1], tmp_path / "e1", data=mnist)
    with pytest.raises(DigitlabError, match="the same run is given twice"):
        jobs.make_ensemble([members[0], members[0]], tmp_path / "e2", data=mnist)
    jobs.make_ensemble(members[:2], tmp_path / "e3", data=mnist)
    with pytest.raises(DigitlabError, match="already holds a finished run"):
        jobs.make_ensemble(members[:2], tmp_path / "e3", data=mnist)
    mine = tmp_path / "mine"  # the user's own files: writing the ensemble there cleared them
    (mine / "figures").mkdir(parents=True)
    (mine / "report.html").write_text("my report")
    with pytest.raises(DigitlabError, match="holds files that are not a digitlab run"):
        jobs.make_ensemble(members[:2], mine, data=mnist)
    assert (mine / "report.html").read_text() == "my report"
    with pytest.raises(DigitlabError, match="is an ensemble; give its members"):
        jobs.make_ensemble([tmp_path / "e3", members[2]], tmp_path / "e4", data=mnist)
    info = json.loads((tmp_path / "e3" / "model.json").read_text())
    info["members"][1]["temperature"] = "hot"  # an edited model.json names the field
    (tmp_path / "e3" / "model.json").write_text(json.dumps(info))
    with pytest.raises(runs.RunError, match=r"members\[1\]\.temperature"):
        runs.load_model(tmp_path / "e3")


@pytest.fixture(scope="module")
def split_members(mnist_home, tmp_path_factory):
    """Two small MLPs of different seeds that hold out the same images (--split-seed 0)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_HOME", str(mnist_home))
        folder = tmp_path_factory.mktemp("split_members")
        for seed in (1, 2):
            config = TrainConfig(epochs=1, seed=seed, split_seed=0, val_split=0.1)
            jobs.start(folder / f"s{seed}", mlp([32]), "numpy", config, limit=3000)
        yield [folder / "s1", folder / "s2"]


def test_members_sharing_a_split_calibrate_the_ensemble_on_it(split_members, mnist, tmp_path):
    from digitlab.jobs.evaluate import split_data

    a, b = (runs.read_info(m) for m in split_members)
    held_a, held_b = split_data(a, "val", mnist)[0], split_data(b, "val", mnist)[0]
    assert len(held_a) == 300 and np.array_equal(held_a, held_b)  # seeds differ, split does not
    unseeded = TrainConfig(seed=1, val_split=0.1).to_dict()
    assert not np.array_equal(split_data(a | {"train_config": unseeded}, "val", mnist)[0], held_a)
    info = jobs.make_ensemble(split_members, tmp_path / "ens", data=mnist)
    assert info["train_config"] == {"val_split": 0.1, "split_seed": 0}
    assert info["calibration"]["split"] == "validation" and info["calibration"]["images"] == 300
    images = mnist.test.images[:300]
    mean = np.mean([Predictor(m).probabilities(images) for m in split_members], axis=0)
    expected = ev.softmax(np.log(mean + 1e-30), info["temperature"])  # calibrated once more
    np.testing.assert_allclose(
        Predictor(tmp_path / "ens").probabilities(images), expected, atol=1e-5
    )
    metrics = jobs.evaluate_run(tmp_path / "ens", split="val", data=mnist)
    assert metrics["n"] == 300 and metrics["temperature"] == info["temperature"]
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    done = jobs.export_onnx(tmp_path / "ens", tmp_path / "e.onnx", data=mnist)
    assert done["agree"] and done["label_disagreements"] == 0


def test_members_with_their_own_splits_leave_the_ensemble_none(members, mnist, tmp_path):
    info = jobs.make_ensemble(members[:2], tmp_path / "ens", data=mnist)  # seeds 0 and 1
    assert info["temperature"] == 1.0 and "calibration" not in info
    with pytest.raises(DigitlabError, match="held out different images"):
        jobs.evaluate_run(tmp_path / "ens", split="val", data=mnist)
    old = json.loads((tmp_path / "ens" / "model.json").read_text()) | {"train_config": {}}
    (tmp_path / "ens" / "model.json").write_text(json.dumps(old))  # made before split_seed
    with pytest.raises(DigitlabError, match="held out different images"):
        jobs.evaluate_run(tmp_path / "ens", split="val", calibrate=True, data=mnist)


def test_members_that_held_out_nothing_say_so(mnist_home, mnist, tmp_path, monkeypatch):
    """Members trained on every image (--val-split 0, the final fit once validation has chosen)
    make an ensemble; asked for a validation split, it names why it has none."""
    monkeypatch.setenv("DIGITLAB_HOME", str(mnist_home))
    for seed in (1, 2):
        config = TrainConfig(epochs=1, seed=seed, val_split=0.0)
        jobs.start(tmp_path / f"all{seed}", mlp([16]), "numpy", config, limit=1000)
    info = jobs.make_ensemble([tmp_path / "all1", tmp_path / "all2"], tmp_path / "ens", data=mnist)
    assert info["train_config"] == {"val_split": 0.0} and info["temperature"] == 1.0
    assert info["test"]["acc"] > 0.5
    with pytest.raises(DigitlabError, match=r"held out no images \(--val-split 0\)") as e:
        jobs.evaluate_run(tmp_path / "ens", split="val", data=mnist)
    assert str(e.value).startswith(f"{tmp_path / 'ens'}: ")  # names the run
    with pytest.raises(DigitlabError, match=r"^\S+all1: this run trained on all its training"):
        jobs.evaluate_run(tmp_path / "all1", split="val", data=mnist)


def test_runs_from_before_split_seed_are_still_seeds_of_one_experiment(split_members):
    from digitlab.jobs.compare import seed_group

    info = runs.read_info(split_members[0])  # seed 1, split_seed 0
    config = info["train_config"]
    assert seed_group(info) == seed_group(info | {"train_config": config | {"seed": 2}})
    assert seed_group(info | {"train_config": config | {"split_seed": 1}}) != seed_group(info)
    new = info | {"train_config": config | {"split_seed": -1}}  # the split follows the seed
    old = info | {"train_config": {k: v for k, v in config.items() if k != "split_seed"}}
    assert seed_group(old) == seed_group(new | {"train_config": new["train_config"] | {"seed": 5}})


def test_top_k_of_a_sweep_are_its_best_complete_trials(tmp_path):
    trials = [
        {"number": 0, "state": "COMPLETE", "val_acc": 0.91, "run": "a"},
        {"number": 1, "state": "PRUNED", "val_acc": 0.99, "run": "b"},
        {"number": 2, "state": "COMPLETE", "val_acc": 0.95, "run": "c"},
        {"number": 3, "state": "COMPLETE", "val_acc": 0.93, "run": "d"},
    ]
    (tmp_path / "sweep.json").write_text(json.dumps({"trials": trials}))
    assert [p.name for p in top_of_sweep(tmp_path, 2)] == ["c", "d"]
    with pytest.raises(DigitlabError, match="only 3 complete trials"):
        top_of_sweep(tmp_path, 4)


def test_seeds_trains_each_seed_once_then_combines_them(mnist, tmp_path):
    """--seeds N: a grid sweep over the seed (nothing pruned), then the ensemble of all N."""
    from typer.testing import CliRunner

    from digitlab.cli import app

    out = tmp_path / "ens"
    args = ["ensemble", "--seeds", "3", "--model", "mlp:16", "--limit", "1000", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = runs.read_info(out)
    seeds = sorted(runs.read_info(m["run"])["train_config"]["seed"] for m in info["members"])
    assert seeds == [0, 1, 2] and 0.3 < info["test"]["acc"] < 1
    assert info["train_config"] == {"val_split": 0.1, "split_seed": 0}  # one split: calibrated
    assert info["calibration"]["images"] == 100
    again = CliRunner().invoke(app, args)  # the members are kept; the ensemble is not replaced
    assert again.exit_code == 1 and "already holds a run" in again.output

"""Run directories, specs and settings as a careless or hostile user hands them over (issue 16):
nothing a user wrote is deleted without --overwrite, a second writer is refused, a run folder
cannot name files outside itself, and every bad field is one line naming it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from digitlab import jobs, runs
from digitlab.cli import app
from digitlab.errors import DigitlabError
from digitlab.jobs.plan import plan_training
from digitlab.run_schema import RunError, digest
from digitlab.spec import mlp
from digitlab.train import TrainConfig


@pytest.fixture(scope="module")
def small_run(mnist_home, tmp_path_factory) -> Path:
    """A finished 2-epoch mlp:16 on 2,000 images (about a second), copied by each test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_HOME", str(mnist_home))
        run = tmp_path_factory.mktemp("hostile") / "run"
        jobs.start(run, mlp([16], name="mlp-16"), "numpy", TrainConfig(epochs=2), limit=2000)
    return run


@pytest.fixture
def run(small_run, tmp_path, mnist) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    return copy


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


# ---- nothing lost ------------------------------------------------------------------------------


def test_train_into_a_folder_of_the_users_files_is_refused_and_deletes_nothing(mnist, tmp_path):
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "thesis.png").write_bytes(b"precious")
    (out / "report.html").write_text("my report")
    result = cli("train", "--model", "mlp:8", "--limit", "500", "--epochs", "1", "--out", str(out))
    assert result.exit_code == 1 and "not a digitlab run" in result.stderr
    assert (out / "figures" / "thesis.png").read_bytes() == b"precious"
    assert (out / "report.html").read_text() == "my report"


def test_a_second_writer_into_the_same_run_folder_is_refused(mnist, mnist_home, tmp_path):
    out = tmp_path / "shared"
    env = os.environ | {"DIGITLAB_HOME": str(mnist_home)}
    command = [
        sys.executable,
        "-m",
        "digitlab.cli",
        "train",
        "--model",
        "mlp:64",
        "--out",
        str(out),
    ]
    first = subprocess.Popen(  # long enough to still be writing when the second has started
        [*command, "--epochs", "8", "--seed", "1"], env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while not (out / "model.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the first writer holds the folder once model.json appears
    second = subprocess.run(
        [*command, "--epochs", "1", "--seed", "2", "--overwrite"], env=env, capture_output=True
    )
    assert first.wait(timeout=60) == 0
    assert second.returncode == 1 and b"another digitlab process is writing" in second.stderr
    info = runs.read_info(out)
    assert info["train_config"]["seed"] == 1 and info["training"]["finished"]
    meta = json.loads((out / "checkpoint" / "latest.json").read_text())
    assert meta["config"]["seed"] == 1  # model.json and checkpoint/ from the same writer


def test_the_main_job_keeps_an_earlier_comparison(mnist, tmp_path):
    (tmp_path / "main" / "compare").mkdir(parents=True)
    (tmp_path / "main" / "compare" / "comparison.json").write_text("{}")
    with pytest.raises(DigitlabError, match=r"earlier job \(compare\).*--overwrite"):
        jobs.main_job(tmp_path / "main", "mnist", limit=500)
    assert (tmp_path / "main" / "compare" / "comparison.json").read_text() == "{}"
    twice = [("mlp-32", "numpy")] * 2  # trained both into one folder, then refused at compare
    with pytest.raises(DigitlabError, match="mlp-32:numpy is given twice"):
        jobs.main_job(tmp_path / "twice", "mnist", limit=500, models=twice)
    assert not (tmp_path / "twice").exists()


def test_export_keeps_an_existing_file_unless_told(run, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"someone else's model")
    result = cli("export", str(run), "--out", str(out))
    assert (
        result.exit_code == 1
        and "already exists" in result.stderr
        and "--overwrite" in result.stderr
    )
    assert out.read_bytes() == b"someone else's model"
    wrong = cli("export", str(run), "--out", str(tmp_path / "model.txt"))
    assert wrong.exit_code == 1 and "name it .onnx" in wrong.stderr
    assert not (tmp_path / "model.txt").exists()


# ---- what a run folder may name ---------------------------------------------------------------


def unfinished(run: Path) -> Path:
    info = json.loads((run / "model.json").read_text())
    info["training"]["finished"] = False
    (run / "model.json").write_text(json.dumps(info))
    return run


def edit_latest(run: Path, change, keep_digest: bool = False) -> None:
    path = run / "checkpoint" / "latest.json"
    meta = json.loads(path.read_text())
    change(meta)
    if keep_digest:
        meta["meta_sha256"] = digest(meta)
    path.write_text(json.dumps(meta))


EDITS = {
    "weights outside": lambda m: m.update(weights="../../other/epoch-0002.safetensors"),
    "weights absolute": lambda m: m.update(weights="/etc/passwd"),
    "no digest": lambda m: m.pop("meta_sha256"),
    "epoch rewound": lambda m: m.update(epoch=1),
    "negative epoch": lambda m: m.update(epoch=-3),
    "engine swapped": lambda m: m.update(engine="torch"),
    "no config": lambda m: m.pop("config"),
    "no rng": lambda m: m.pop("rng"),
    "history cut": lambda m: m.update(history=m["history"][:1]),
    "stale text": lambda m: m.update(stale="many"),
    "weights number": lambda m: m.update(weights=7),
    "config lr": lambda m: m["config"].update(lr="fast"),
}


@pytest.mark.parametrize(
    ("edit", "keep_digest"),
    [(e, k) for e in EDITS for k in (False, True) if (e, k) != ("no digest", True)],
)
def test_an_edited_checkpoint_is_refused_in_one_line(run, edit, keep_digest):
    """With the digest left as it was, any edit is caught by it; with the digest recomputed, the
    fields themselves are checked (a rewound epoch against history.csv, paths against the
    checkpoint folder)."""
    edit_latest(unfinished(run), EDITS[edit], keep_digest)
    with pytest.raises(DigitlabError) as e:
        jobs.resume(run)
    one_line(e)


def test_a_run_cannot_make_digitlab_read_a_path_of_its_choosing(run, tmp_path):
    info = json.loads((run / "model.json").read_text())
    info["data"]["ref"] = "/etc/passwd"
    (run / "model.json").write_text(json.dumps(info))
    result = cli("evaluate", str(run))
    assert result.exit_code == 1 and "data.ref names a path" in result.stderr
    assert "--dataset" in result.stderr


# ---- one line for every bad field -------------------------------------------------------------

MODEL_JSON_EDITS = {
    "classes": ([], "classes"),
    "classes one": (["a"], "classes"),
    "preprocessing.std": (0, "preprocessing.std"),
    "preprocessing.std null": (None, "preprocessing.std"),
    "preprocessing.mean": ("x", "preprocessing.mean"),
    "temperature": ("warm", "temperature"),
    "temperature zero": (0, "temperature"),
    "temperature negative": (-1, "temperature"),
    "training": (None, "training"),
    "spec.input_shape": ([-1, 28, 28], "input_shape"),
    "novelty": ("checked", "novelty"),
    "novelty threshold": ({"threshold": "high", "sha256": "0" * 64}, "novelty.threshold"),
    "novelty sha256": ({"threshold": 0.2, "sha256": "../model.json"}, "novelty.sha256"),
}


def set_field(info: dict, key: str, value) -> None:
    path = key.split(" ")[0].split(".")
    target = info
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@pytest.mark.parametrize("edit", list(MODEL_JSON_EDITS))
def test_a_foreign_model_json_is_one_line_naming_the_field(run, edit):
    value, named = MODEL_JSON_EDITS[edit]
    info = json.loads((run / "model.json").read_text())
    set_field(info, edit, value)
    (run / "model.json").write_text(json.dumps(info))
    with pytest.raises(DigitlabError) as e:
        runs.load_model(run)
    assert named in one_line(e)
    result = cli("predict", str(run), str(run / "model.json"))
    assert (
        result.exit_code == 1
        and result.stderr.count("\n") == 1
        and "Traceback" not in result.output
    )


@pytest.mark.parametrize("dtype", [np.int8, np.bool_, np.float64])
def test_weights_of_another_type_are_refused_not_cast(run, dtype):
    weights = load_file(run / "model.safetensors")
    weights["layers.1.weight"] = weights["layers.1.weight"].astype(dtype)
    save_file(weights, run / "model.safetensors")
    info = json.loads((run / "model.json").read_text())
    info.pop("weights_sha256")
    (run / "model.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match=f"layers.1.weight is {np.dtype(dtype).name}"):
        runs.load_model(run)


def test_overflowing_weights_never_answer_nan(run, mnist, tmp_path):
    weights = load_file(run / "model.safetensors")
    weights["layers.3.weight"] = np.full_like(weights["layers.3.weight"], 3e38)
    save_file(weights, run / "model.safetensors")
    info = json.loads((run / "model.json").read_text())
    info.pop("weights_sha256")
    (run / "model.json").write_text(json.dumps(info))
    from PIL import Image

    Image.fromarray(255 - mnist.test.images[0]).save(tmp_path / "seven.png")
    result = cli("predict", str(run), str(tmp_path / "seven.png"))
    assert result.exit_code == 1 and "NaN" in result.stderr and "nan%" not in result.output


def test_files_that_are_not_regular_are_refused_before_reading(run, tmp_path):
    (run / "model.safetensors").unlink()
    os.mkfifo(run / "model.safetensors")  # reading it would block forever
    with pytest.raises(RunError, match="not a regular file"):
        runs.load_model(run)


SPEC_FILES = {
    "huge dense.json": (
        json.dumps(
            {
                "layers": [
                    {"type": "Flatten"},
                    {"type": "Dense", "units": 10**20},
                    {"type": "Dense", "units": 10},
                ]
            }
        ),
        "parameters",
    ),
    "long integer.json": (
        '{"layers": [{"type": "Dense", "units": 1' + "0" * 5000 + "}]}",
        "usable",
    ),
    "deep.json": ("[" * 100_000 + "]" * 100_000, "usable"),
    "latin1.toml": ("name = 'caf\xe9'".encode("latin-1"), "UTF-8"),
}


@pytest.mark.parametrize("name", list(SPEC_FILES))
def test_a_bad_spec_file_is_one_line(tmp_path, name):
    text, needle = SPEC_FILES[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DigitlabError, match=needle) as e:
        plan_training(str(path))
    one_line(e)


@pytest.mark.parametrize(
    "shorthand", ["mlp:1000000000", "cnn:100000-100000/100000", "mlp:" + "9" * 5000]
)
def test_a_model_too_large_is_refused_before_allocating(shorthand):
    result = cli("train", "--model", shorthand, "--limit", "100")
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1


CONFIGS = {
    "not utf8": (b"epochs = 2\nname = '\xff'\n", "UTF-8"),
    "train is a number": (b"train = 5\n", "table of settings"),
    "std inf": (b"std = inf\n", "finite"),
    "lr nan": (b"[train]\nlr = nan\n", "lr"),
    "huge seed": (b"seed = 99999999999999999999\n", "seed"),
    "settings beside [train]": (b"epochs = 1\nfoo = 2\n[train]\nlr = 0.1\n", "epochs, foo outside"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_bad_settings_file_is_one_line(tmp_path, name):
    text, needle = CONFIGS[name]
    (tmp_path / "train.toml").write_bytes(text)
    with pytest.raises(DigitlabError, match=needle) as e:
        plan_training("mlp:8", config_file=tmp_path / "train.toml")
    one_line(e)


def test_a_train_that_fails_before_writing_leaves_no_folder(mnist_home, tmp_path):
    """A folder holding only .lock was left behind by every failed start."""
    result = cli("train", "--model", "mlp:8", "--limit", "5", "--out", str(tmp_path / "x5"))
    assert result.exit_code == 1 and "holds out no image" in result.stderr
    assert not (tmp_path / "x5").exists()


def test_predict_refuses_a_nan_threshold_and_reads_non_utf8_names(run, mnist, tmp_path):
    from PIL import Image

    path = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    Image.fromarray(255 - mnist.test.images[0]).save(path)
    result = cli("predict", str(run), str(path), "--unsure", "nan")
    assert result.exit_code == 1 and "--unsure nan" in result.stderr
    steps = tmp_path / "steps.png"
    result = cli("predict", str(run), str(path), "--show-steps", str(steps))
    assert result.exit_code == 0, result.output
    assert steps.read_bytes()[:4] == b"\x89PNG" and "caf\ufffd.png: " in result.stdout


# ---- fuzzed fields --------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def paths_of(value, prefix=()) -> list[tuple]:
    """Every key path in a JSON value (dict keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:6]):
            out += paths_of(v, (*prefix, i))
    return out


def replaced(value, path: tuple, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(copy[path[0]], path[1:], new)
    return copy


@settings(
    max_examples=int(os.environ.get("DIGITLAB_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_model_json_loads_correctly_or_is_one_line(small_run, mnist, tmp_path, data):
    """Any one field of model.json replaced by any JSON value: the run reads digits with finite
    probabilities, or refuses in one line. Never a traceback, never NaN."""
    run = tmp_path / f"fuzz-{time.monotonic_ns()}"
    shutil.copytree(small_run, run)
    info = json.loads((run / "model.json").read_text())
    path = data.draw(st.sampled_from(paths_of(info)))
    (run / "model.json").write_text(json.dumps(replaced(info, path, data.draw(JSON_VALUES))))
    try:
        from digitlab.predict import Predictor

        probs = Predictor(run).probabilities(mnist.test.images[:4])
    except DigitlabError as e:
        assert "\n" not in str(e) and len(str(e)) < 400, str(e)
    else:
        assert np.isfinite(probs).all() and probs.shape[0] == 4
    finally:
        shutil.rmtree(run)


@settings(
    max_examples=int(os.environ.get("DIGITLAB_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_checkpoint_resumes_or_is_one_line(small_run, mnist, tmp_path, data):
    """Any one field of latest.json replaced, its digest recomputed or not: resume finishes
    the run, or refuses in one line."""
    run = tmp_path / f"fuzz-{time.monotonic_ns()}"
    shutil.copytree(small_run, run)
    unfinished(run)
    meta = json.loads((run / "checkpoint" / "latest.json").read_text())
    path = data.draw(st.sampled_from(paths_of(meta)))
    meta = replaced(meta, path, data.draw(JSON_VALUES))
    if data.draw(st.booleans()) and isinstance(meta, dict):
        meta["meta_sha256"] = digest(meta)
    (run / "checkpoint" / "latest.json").write_text(json.dumps(meta))
    try:
        jobs.resume(run, mnist)
    except DigitlabError as e:
        assert "\n" not in str(e) and len(str(e)) < 400, str(e)
    else:
        assert runs.read_info(run)["training"]["finished"]
    finally:
        shutil.rmtree(run)

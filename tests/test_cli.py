"""The `digitlab` command, through Typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_data_info_json(mnist):
    result = invoke("data", "info", "mnist", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["splits"]["train"]["size"] == 60000
    assert info["splits"]["test"]["size"] == 10000
    assert info["verified"] is True and info["source"] == "cache"
    assert info["splits"]["test"]["class_counts"][1] == 1135


def test_data_info_human(mnist):
    result = invoke("data", "info", "mnist")
    assert result.exit_code == 0
    assert "mnist: 60,000 train + 10,000 test images, 28x28, 10 classes" in result.stdout
    assert "verified against pinned SHA-256" in result.stdout


def test_show_png_grid(mnist, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke(
        "data", "show", "mnist", "--split", "test", "--index", "0:12", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 20  # digits were drawn, not a blank canvas


def test_show_ascii(mnist):
    result = invoke("data", "show", "mnist", "--index", "0")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("#0 5")
    assert any("@" in line for line in lines) and len(lines) == 15


def test_export_csv_and_reimport_by_path(mnist, tmp_path):
    out = tmp_path / "csv"
    result = invoke(
        "data", "export", "mnist", "--format", "csv", "--limit", "50", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    info = json.loads(invoke("data", "info", str(out), "--json").stdout)
    assert info["splits"]["train"]["size"] == 50 and info["verified"] is False
    assert (
        info["splits"]["train"]["class_counts"]
        == np.bincount(mnist.train.labels[:50], minlength=10).tolist()
    )


def test_errors_are_one_line_with_nonzero_exit(mnist, tmp_path):
    bad = tmp_path / "train.csv"
    bad.write_text("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n1,2,3\n")
    for args, needle in [
        (("data", "info", "no-such-thing"), "neither a known dataset"),
        (("data", "info", str(bad)), "line 2: 3 columns, expected 785"),
        (("data", "show", "mnist", "--index", "x"), "--index 'x'"),
        (
            ("data", "export", "mnist", "--format", "tiff", "--out", str(tmp_path / "o")),
            "--format 'tiff'",
        ),
    ]:
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: ") and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output


def test_run_main_job(mnist, tmp_path):
    result = invoke("run", "--out", str(tmp_path / "demo"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["verified"] and (tmp_path / "demo" / "samples.png").stat().st_size > 10_000


def test_installed_entry_point(mnist):
    done = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("digitlab ")
    done = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "data", "fetch", "--help"],
        capture_output=True,
        text=True,
    )
    assert "Example: digitlab data fetch mnist" in done.stdout


def test_unwritable_outputs_and_bad_settings_are_one_line_errors(mnist, tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    cases = [
        (("data", "show", "mnist", "--index", "0", "--out", str(a_dir)), "a-dir"),
        (
            ("data", "show", "mnist", "--index", "0", "--out", str(tmp_path / "g.gif")),
            "cannot write .gif",
        ),
        (("run", "--out", str(a_file)), "a-file"),
        (("data", "export", "mnist", "--limit", "2", "--out", str(a_file / "sub")), "a-file"),
        (("data", "fetch", str(a_dir)), "fetch takes a dataset name"),
        (("data", "info", "mnist", "--from", str(tmp_path / "nowhere")), "no such file or folder"),
    ]
    for args, needle in cases:
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    monkeypatch.setenv("DIGITLAB_TIMEOUT", "abc")
    result = invoke("data", "info", "fashion-mnist")
    assert result.exit_code == 1 and "DIGITLAB_TIMEOUT='abc'" in result.stderr
    monkeypatch.setenv("DIGITLAB_HOME", str(a_file))
    monkeypatch.delenv("DIGITLAB_TIMEOUT")
    result = invoke("data", "info", "mnist")
    assert result.exit_code == 1 and "point DIGITLAB_HOME at a writable folder" in result.stderr


def test_run_on_unlabeled_data(tmp_path):
    rows = ["pixel" + ",pixel".join(str(i) for i in range(784))]
    rows += [",".join(["0"] * 300 + ["200"] * 184 + ["0"] * 300)] * 3
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    result = invoke("run", "--dataset", str(tmp_path / "test.csv"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "samples.png").exists()

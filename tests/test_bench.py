"""The peer benchmark suite's plumbing (benchmarks/peers) and `digitlab bench`, on tiny data:
every contender runs or says why not, and the JSON and the markdown section are written. No
timing is asserted (CI machines are noisy) and nothing touches the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import digitlab
from digitlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ lives in the checkout, not in the installed package

from benchmarks import common, peers  # noqa: E402
from benchmarks.peers import contenders as C  # noqa: E402

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings(  # inside Keras' torch backend, not ours
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """Point the suite's outputs (docs/benchmarks/, benchmarks/results/) at a temporary folder."""
    monkeypatch.setattr(common, "RESULTS", tmp_path / "docs")
    monkeypatch.setattr(peers, "RESULTS_DIR", tmp_path / "results")
    return tmp_path


def tiny_data(n_train: int = 300, n_test: int = 100) -> C.Data:
    """Random digits: the plumbing, not the accuracy, is under test."""
    rng = np.random.default_rng(0)
    return C.Data(
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )


def test_smoke_suite_writes_every_contender(outputs):
    results = peers.run(size="smoke", isolate=False, data=tiny_data(), on_event=lambda m: None)
    expected = peers.lineup(peers.PLANS["smoke"])
    for case, names in expected.items():
        if case in peers.RECORDS_ONLY:
            assert case not in results["cases"]  # benchmarks/records.py runs it
            continue
        for name in names:
            entry = results["cases"][case][name]
            assert "runs" in entry or entry.get("skipped"), (case, name, entry)
            if "runs" in entry:
                assert entry["runs"][0]["epochs"], (case, name)
                assert entry["peak_rss_mib"] > 0 and "cpu_others_share" in entry
    assert "numpy" in results["cases"]["inference"]["all"]["inference"]
    if peers.gpu_device() is None:
        assert "no GPU" in results["cases"]["gpu"]["skipped"]
    assert {v["case"] for v in results["verdicts"]} == {1, 2, 3, 4}

    written = json.loads(Path(results["results_file"]).read_text())
    assert written["mode"] == "smoke" and written["versions"]["numpy"] == np.__version__
    assert written["machine"]["cores"] >= 1
    section = (outputs / "docs" / "peers.md").read_text()
    assert "### Targets" in section and "plain PyTorch loop" in section
    assert "Keras 3 (torch backend)" in section and "onnxruntime" in section


def test_the_records_only_cases_run_every_contender():
    plan, d = peers.PLANS["smoke"], tiny_data()
    for case in peers.RECORDS_ONLY:
        for name in peers.lineup(plan)[case]:
            entry = peers.measure(case, name, plan, d)
            assert entry["runs"][0]["epochs"], (case, name)


def test_a_contender_that_fails_is_recorded_with_its_reason(monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'keras'")

    monkeypatch.setattr(peers, "measure", broken)
    plan = peers.PLANS["smoke"]
    entry = peers.run_one("mlp", "Keras 3 (torch backend)", plan, "cpu", False, None, print)
    assert entry["skipped"] == "ImportError: No module named 'keras'"


def test_time_to_target_sums_epochs_until_reached():
    runs = [{"seed": 0, "epochs": [[1.0, 0.97], [2.0, 0.976], [3.0, 0.981]]}]
    summary = peers.summarise(runs, (0.975, 0.98))
    assert summary["time_to"]["0.975"]["median_s"] == 3.0
    assert summary["time_to"]["0.98"]["epochs"] == [3]
    assert summary["time_to"]["0.98"]["median_s"] == 6.0
    assert summary["final_acc"]["median"] == 0.981


def test_bench_help():
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--quick" in result.stdout and "--json" in result.stdout


def test_bench_runs_the_suite(monkeypatch, tmp_path):
    called = {}

    def fake_run(quick=False, on_event=None):
        called["quick"] = quick
        return {"verdicts": [], "results_file": str(tmp_path / "r.json"), "cases": {}}

    monkeypatch.setattr(peers, "run", fake_run)
    monkeypatch.setattr(common, "assemble", lambda: tmp_path / "benchmarks.md")
    result = runner.invoke(app, ["bench", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    assert called == {"quick": True}
    assert json.loads(result.stdout)["results_file"].endswith("r.json")


def test_bench_outside_a_checkout_is_one_line(monkeypatch, tmp_path):
    fake = tmp_path / "site-packages" / "digitlab" / "__init__.py"
    monkeypatch.setattr(digitlab, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["bench"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "needs a source checkout" in result.output


def test_gpu_case_is_planned_only_with_a_device():
    plan = peers.PLANS["quick"]
    assert "gpu" not in peers.lineup(plan, "cpu")
    gpu = peers.lineup(plan, "cuda")["gpu"]
    assert {kwargs.get("device") for _, kwargs, _ in gpu.values()} == {"cuda"}
    assert "digitlab torch, cnn-best recipe" in gpu


def test_a_peer_that_never_reaches_the_target_gives_a_lower_bound():
    from benchmarks.peers import report

    peer = {"time_to": {"0.98": {"reached": 0, "runs": 1, "median_s": None}},
            "total_s": {"min": 40.0}, "epochs_run": [15]}  # fmt: skip
    ratio, text = report.speedup(peer, 4.0, 0.98)
    assert text.startswith("> 10.0×")
    assert report.verdict(1, "claim", 8, ratio, text)["met"] is True
    assert report.verdict(1, "claim", 12, ratio, text)["met"] is None  # undecided, not a miss
    assert report.verdict(1, "claim", 12, 3.0, "3.0×")["met"] is False
    _, text = report.speedup(peer, 40.0 / 16.89, 0.98)  # a lower bound of 16.89 rounds down
    assert text.startswith("> 16.8×")


def test_a_run_that_stopped_short_shows_the_same_median_in_table_and_verdict():
    from benchmarks.peers import report

    times = {"median_all_s": 53.0, "median_all_exact": True, "reached": 2, "runs": 3,
             "median_s": 41.4, "min_s": 29.8, "max_s": 53.0, "epochs": [6, 9]}  # fmt: skip
    peer = {"time_to": {"0.99": times}, "total_s": {"min": 40.0}, "epochs_run": [9, 12, 9]}
    cell = report.reach(peer, 0.99)
    _, text = report.speedup(peer, 10.0, 0.99, verbose=True)
    assert cell.startswith("53.0 s (median of all runs; 2/3 got there: 29.8–53.0 s)")
    assert text.startswith("53.0 s ÷ 10.00 s")


def test_best_openblas_core_follows_the_cpu_flags():
    from digitlab.machine import native_openblas_core

    avx512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"}
    assert native_openblas_core(avx512 | {"avx512_bf16"}) == "Cooperlake"
    assert native_openblas_core(avx512) == "SkylakeX"
    assert native_openblas_core({"avx2", "fma", "sse4_2"}) == "Haswell"
    assert native_openblas_core({"sse2"}) is None


def test_a_contender_process_gets_the_blas_kernels_the_suite_names():
    """The case-4 rerun with the CPU's own kernels works through the child's environment: prove
    that it reaches OpenBLAS (Sandybridge: AVX kernels, below any CPU this suite runs on)."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl reports the OpenBLAS kernels")
    from digitlab.machine import cpu_flags

    if "avx" not in cpu_flags():
        pytest.skip("no AVX (or no /proc/cpuinfo) here: the Sandybridge kernels cannot run")
    code = "from digitlab.machine import blas_kernels; print(blas_kernels())"
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    assert "Sandybridge kernels (OPENBLAS_CORETYPE=Sandybridge)" in out.stdout


def test_a_contender_process_reports_its_own_peak_memory_not_its_parents():
    """Linux carries ru_maxrss from parent to child through fork and exec: a contender started
    by a big `make bench` process would report the parent's peak. VmHWM does not."""
    big = np.ones(2**26)  # 512 MiB touched in the parent, alive while the child starts
    code = "from benchmarks.peers import peak_rss_mib; print(peak_rss_mib())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    assert float(out.stdout) < 400, f"child peak {out.stdout.strip()} MiB beside a 512 MiB parent"
    assert big[-1] == 1.0


def test_the_ensemble_benchmark_counts_the_built_in_reader_as_its_seed_0():
    """The reader was trained by the recipe with seed 0 on the shared split, so the benchmark
    reuses it rather than training it again; it is no member for any other seed."""
    from benchmarks import ensembles

    from digitlab import reader
    from digitlab.presets import PRESETS, RECIPES

    layers = RECIPES["reader"][0]
    assert ensembles.is_member(reader.FOLDER, ensembles.recipe(0), layers)
    assert not ensembles.is_member(reader.FOLDER, ensembles.recipe(1), layers)
    # another model's member with the same settings is not one: cnn-vgg's layers differ
    assert not ensembles.is_member(reader.FOLDER, ensembles.recipe(0), PRESETS["cnn-vgg"].spec)
    member = {"test": 0.996, "val": 0.995, "degraded": 0.976, "seconds": 700.0, "run": "m"}
    result = {
        "members": [member] * 5,
        "ensembles": {"3": member | {"test": 0.9966}, "5": member | {"test": 0.9976}},
    }
    rows = [line for line in ensembles.markdown(result).splitlines() if line.startswith("| 3 ")]
    assert "**99.66%**" in rows[0] and rows[0].endswith("| **no** |")
    assert ensembles.markdown(result).splitlines()[-1].endswith("| **yes** |")


def test_the_best_network_benchmark_judges_the_mean_of_three_seeds_and_chooses_tta_on_validation():
    from benchmarks import cnn_vgg

    def member(test: float, val: float, tta_val: float, minutes: float = 9.0) -> dict:
        tta = {"test": test + 0.0002, "val": tta_val}
        return {"test": test, "val": val, "degraded": 0.97, "seconds": minutes * 60, "tta": tta}

    members = [member(0.9970, 0.995, 0.996), member(0.9968, 0.995, 0.996), member(0.9974, 0.9, 1)]
    members += [member(0.9970, 0.995, 0.995)] * 2
    ensembles = {
        "3": members[0] | {"test": 0.9974},
        "5": members[0] | {"test": 0.9980, "val": 0.9950},
        "mixed": members[0] | {"test": 0.9973, "val": 0.9951},
    }
    result = {"members": members, "elastic": members[:2], "ensembles": ensembles}
    lines = cnn_vgg.markdown(result).splitlines()
    single = next(line for line in lines if line.startswith("| best single"))
    assert "**99.71%**" in single and single.endswith("| **yes** |")
    assert any("chosen with `--tta`" in x for x in lines)  # validation 0.9973 against 0.9633
    assert next(x for x in lines if x.startswith("| 3: seeds 0-2 ")).endswith("| **no** |")
    # of the two fives, validation chooses the mixed one, whatever the test set says
    plain = next(x for x in lines if x.startswith("| 5: seeds 0-4 "))
    assert "| not chosen |" in plain and plain.endswith("| not counted (reached) |")
    mixed = next(x for x in lines if x.startswith("| 5: seeds 0-2 "))
    assert "| chosen |" in mixed and mixed.endswith("| **no** |")
    assert any(x.startswith("| 5, elastic |") for x in lines)
    # the final fit, on all 60,000 images, is the chosen five's and judged as shown
    fit = [{"test": 0.9972, "seconds": 540.0}] * 5
    for test, met in ((0.99744, "| **no** |"), (0.99746, "| **yes** |")):  # 99.74%, 99.75%
        result["full"] = {"of": "mixed", "tta": False, "members": fit, "test": test}
        lines = cnn_vgg.markdown(result).splitlines()
        final = next(x for x in lines if "all 60,000 images |" in x)
        assert final.startswith("| 5: seeds 0-2 and the 2 elastic,") and final.endswith(met)
    assert cnn_vgg.chosen_five(ensembles) == "mixed"
    assert cnn_vgg.chosen_five(ensembles | {"mixed": ensembles["5"]}) == "5"  # a tie: the plain
    members[2] = member(0.9974, 0.995, 0.996, minutes=16.0)  # one seed over the budget
    single = next(x for x in cnn_vgg.markdown(result).splitlines() if x.startswith("| best"))
    assert single.endswith("| **no** |")

"""Reading digits: single-image latency and batch inference (issue 7's figures).

- Single-image `predict` latency in-process, preprocessing included, with the MLP on the NumPy
  engine (target p50 ≤ 2 ms): photos (JPEG, 260-1,200 px, from tests/photos.py), 280x280 PNG
  drawings (what the web page sends), and 28x28 arrays that need no preprocessing.
- Batch inference over the 10,000 prepared test images (uint8 in, probabilities out,
  normalisation included): MLP on the NumPy engine (target ≥ 300,000 images/s) and the small
  CNN on its best engine (target ≥ 20,000 images/s), with the PyTorch engine and onnxruntime
  (the `digitlab export` file) beside them.

Both models are trained here first (the MLP in ~2 s, cnn-small in ~20 s).
"""

from __future__ import annotations

import dataclasses
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, median_seconds, save
from digitlab import data, jobs, runs
from digitlab.predict import Predictor, classify
from digitlab.presets import PRESETS

sys.path.insert(0, str(ROOT / "tests"))
from photos import photo


def drawing(digit: np.ndarray) -> bytes:
    """A 280x280 PNG of dark strokes on white, as the draw-a-digit page sends."""
    image = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def latency(reader: Predictor, inputs: list, repeats: int = 3) -> dict:
    """p50/p90/p99 of one `read` each, over all inputs; the median of `repeats` passes."""
    for item in inputs[:20]:
        reader.read(item)  # warm-up
    passes = []
    for _ in range(repeats):
        times = []
        for item in inputs:
            start = time.perf_counter()
            reader.read(item)
            times.append(time.perf_counter() - start)
        passes.append(np.percentile(np.array(times) * 1000, [50, 90, 99]))
    p50, p90, p99 = np.median(np.stack(passes), axis=0)
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "n": len(inputs)}


def throughput(run: Path, images: np.ndarray) -> dict:
    """Images per second over the test set, uint8 in, probabilities out: NumPy engine, PyTorch
    engine (CPU), onnxruntime."""
    import onnxruntime
    import torch

    from digitlab.jobs.export import onnx_model
    from digitlab.spec import ModelSpec

    info = runs.read_info(run)
    out = {}
    numpy_model = runs.load_model(run, engine="numpy")
    seconds, _ = median_seconds(lambda: classify(numpy_model, info, images), repeats=5)
    out["numpy"] = len(images) / seconds
    torch_model = runs.load_model(run, engine="torch", device="cpu")
    with torch.inference_mode():
        seconds, _ = median_seconds(lambda: classify(torch_model, info, images), repeats=5)
    out["torch"] = len(images) / seconds
    spec = ModelSpec.from_dict(info["spec"])
    blob = onnx_model(spec, numpy_model.state_dict(), info).SerializeToString()
    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])

    def onnx_run():
        pixels = images.astype(np.float32)[:, None]  # the conversion counts, as for the others
        return session.run(["probabilities"], {"pixels": pixels})

    seconds, _ = median_seconds(onnx_run, repeats=5)
    out["onnxruntime"] = len(images) / seconds
    return out


def run() -> dict:
    ds = data.load("mnist")
    rng = np.random.default_rng(0)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        mlp, cnn = Path(tmp) / "mlp", Path(tmp) / "cnn"
        for path, name, engine in ((mlp, "mlp-256-128-64", "numpy"), (cnn, "cnn-small", "torch")):
            preset = PRESETS[name]
            config = dataclasses.replace(preset.config, val_split=0.0)
            jobs.start(path, preset.spec, engine, config, device="cpu")
        reader = Predictor(mlp)
        picks = rng.choice(len(ds.test), 300, replace=False)
        digits = ds.test.images[picks]
        results["latency"] = {
            "photo (JPEG)": latency(reader, [photo(d, rng) for d in digits]),
            "drawing (280x280 PNG)": latency(reader, [drawing(d) for d in digits]),
            "28x28 array": latency(reader, list(digits)),
        }
        results["throughput"] = {
            "mlp-256-128-64": throughput(mlp, ds.test.images),
            "cnn-small": throughput(cnn, ds.test.images),
        }
    lat = results["latency"]
    rows = [
        f"| {kind} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms |"
        for kind, r in lat.items()
    ]
    tp = results["throughput"]
    tp_rows = []
    for model, target in (
        ("mlp-256-128-64", "≥ 300,000 (NumPy)"),
        ("cnn-small", "≥ 20,000 (best)"),
    ):
        r = tp[model]
        best = max(r, key=r.get)
        tp_rows.append(
            f"| {model} | {r['numpy']:,.0f} | {r['torch']:,.0f} | {r['onnxruntime']:,.0f} | "
            f"{best} | {target} |"
        )
    md = "\n".join(
        [
            "## Reading digits (`digitlab predict`, issue 7)",
            "",
            "Single-image latency in-process, preprocessing included (`Predictor.read`), MLP "
            "784-256-128-64-10 on the NumPy engine; 300 MNIST test digits per kind, median of 3 "
            "passes. Target: p50 ≤ 2 ms.",
            "",
            "| input | p50 | p90 | p99 |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            "Batch inference over the 10,000 test images, uint8 in, probabilities out "
            "(normalisation included), images/s, median of 5. PyTorch engine on the CPU; "
            "onnxruntime runs the file `digitlab export` writes.",
            "",
            "| model | NumPy engine | PyTorch engine | onnxruntime | fastest | target |",
            "|---|---:|---:|---:|---|---|",
            *tp_rows,
        ]
    )
    save("predict", results, md)
    return results

"""A trained run as one self-contained ONNX file, checked against both engines before it is kept.

>>> result = export_onnx("runs/cnn", "cnn.onnx")       # needs the `export` and `torch` extras
>>> result["agree"], result["max_prob_diff"]             # True, 3e-07

The graph is written from the ModelSpec and the weights directly (no tracing), so it holds
exactly the layers digitlab knows: input `pixels`, float32 (N, 1, 28, 28) with MNIST's values
0..255 (0 = background); the run's normalisation is inside the graph; outputs `logits` and
`probabilities` (softmax, with the run's temperature when it was calibrated). The file's
metadata carries the classes, the dataset and the digitlab version.

Before the file is put in place, the whole test set runs through onnxruntime, the NumPy engine
and the PyTorch engine: the predicted labels must agree on every image and the probabilities
within `TOLERANCE`, or nothing is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from digitlab import reader, runs
from digitlab.atomic import remove_leftovers, write_bytes
from digitlab.data import Dataset
from digitlab.engines import logits
from digitlab.ensemble import KIND, member_weights
from digitlab.errors import DigitlabError
from digitlab.evaluate import softmax
from digitlab.jobs.evaluate import same_data
from digitlab.jobs.train import run_dataset
from digitlab.spec import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    ModelSpec,
    ReLU,
    Sigmoid,
    Tanh,
)

OPSET = 17
RUNTIMES = ("onnxruntime", "the NumPy engine", "the PyTorch engine")
TOLERANCE = 1e-4  # largest difference in any probability between the three runtimes


class ExportError(DigitlabError):
    """The model could not be exported, or the exported file disagrees with the engines."""


def _needs(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"ONNX export needs {module}: pip install 'digitlab[{extra}]'") from None


def onnx_model(spec: ModelSpec, weights: dict[str, np.ndarray], info: dict):
    """The ONNX ModelProto for a spec and its weights (PyTorch names), with pixels 0..255 in."""
    onnx = _needs("onnx", "export")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    pre = info["preprocessing"]
    scale = np.float32(1 / (255 * pre["std"]))  # the same float32 arithmetic as train.batches
    shift = np.float32(pre["mean"] / pre["std"])
    nodes.append(helper.make_node("Mul", ["pixels", const("scale", scale)], ["scaled"]))
    nodes.append(helper.make_node("Sub", ["scaled", const("shift", shift)], ["x0"]))
    current = "x0"
    for i, layer in enumerate(spec.layers):
        out = f"x{i + 1}"
        w = f"layers.{i}.weight"
        b = f"layers.{i}.bias"
        match layer:
            case Flatten():
                nodes.append(helper.make_node("Flatten", [current], [out], axis=1))
            case Dense():
                inputs = [current, const(w, weights[w])]
                if layer.bias:
                    inputs.append(const(b, weights[b]))
                nodes.append(helper.make_node("Gemm", inputs, [out], transB=1))
            case Conv2D():
                inputs = [current, const(w, weights[w])]
                if layer.bias:
                    inputs.append(const(b, weights[b]))
                k, p, s = layer.kernel_size, layer.padding, layer.stride
                nodes.append(
                    helper.make_node(
                        "Conv", inputs, [out], kernel_shape=[k, k], pads=[p] * 4, strides=[s, s]
                    )
                )
            case MaxPool2D():
                stride = layer.stride or layer.size
                nodes.append(
                    helper.make_node(
                        "MaxPool",
                        [current],
                        [out],
                        kernel_shape=[layer.size] * 2,
                        strides=[stride] * 2,
                    )
                )
            case BatchNorm():
                names = [w, b, f"layers.{i}.running_mean", f"layers.{i}.running_var"]
                inputs = [current, *(const(n, weights[n]) for n in names)]
                nodes.append(
                    helper.make_node("BatchNormalization", inputs, [out], epsilon=layer.eps)
                )
            case Dropout():
                nodes.append(helper.make_node("Identity", [current], [out]))
            case ReLU():
                nodes.append(helper.make_node("Relu", [current], [out]))
            case LeakyReLU():
                nodes.append(
                    helper.make_node("LeakyRelu", [current], [out], alpha=layer.negative_slope)
                )
            case Sigmoid():
                nodes.append(helper.make_node("Sigmoid", [current], [out]))
            case Tanh():
                nodes.append(helper.make_node("Tanh", [current], [out]))
            case _:
                raise ExportError(f"layer {i} ({type(layer).__name__}) has no ONNX form here")
        current = out
    nodes.append(helper.make_node("Identity", [current], ["logits"]))
    temperature = float(info.get("temperature", 1.0))
    nodes.append(helper.make_node("Div", ["logits", const("temperature", temperature)], ["z"]))
    nodes.append(helper.make_node("Softmax", ["z"], ["probabilities"], axis=1))
    c, h, w_ = spec.input_shape
    k = spec.num_classes
    graph = helper.make_graph(
        nodes,
        spec.name or "digitlab",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", c, h, w_])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k]),
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="digitlab",
        producer_version=str(info.get("digitlab_version", "")),
        doc_string="Input: pixels float32 (N, 1, 28, 28), MNIST style 0..255 (0 = background). "
        "Outputs: logits, probabilities.",
    )
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime releases since 1.16
    meta = {
        "classes": json.dumps(info["classes"]),
        "dataset": str(info.get("data", {}).get("dataset", "")),
        "input": "pixels: float32 (N, 1, 28, 28), 0..255, 0 = background, 255 = ink",
        "temperature": str(temperature),
    }
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def ensemble_onnx(info: dict, weights: dict[str, np.ndarray]):
    """One graph for an ensemble: each member's own graph (its normalisation and temperature
    inside, names prefixed m0/, m1/, ...) fed the same pixels; `logits` the log of their mean
    and `probabilities` its softmax at the ensemble's temperature, as it answers on both
    engines."""
    onnx = _needs("onnx", "export")
    from onnx import TensorProto, compose, helper, numpy_helper

    nodes, inits, finals = [], [], []
    for i, member in enumerate(info["members"]):
        member_info = info | {"temperature": float(member["temperature"])}
        proto = onnx_model(
            ModelSpec.from_dict(member["spec"]), member_weights(weights, i), member_info
        )
        graph = compose.add_prefix(proto, prefix=f"m{i}/").graph
        nodes.append(helper.make_node("Identity", ["pixels"], [f"m{i}/pixels"]))
        nodes.extend(graph.node)
        inits.extend(graph.initializer)
        finals.append(f"m{i}/probabilities")
    count = numpy_helper.from_array(np.asarray(len(finals), np.float32), "members")
    tiny = numpy_helper.from_array(np.asarray(1e-30, np.float32), "tiny")
    temperature = float(info.get("temperature", 1.0))  # the ensemble's own, over the mean
    scale = numpy_helper.from_array(np.asarray(temperature, np.float32), "temperature")
    nodes += [
        helper.make_node("Sum", finals, ["total"]),
        helper.make_node("Div", ["total", "members"], ["mean"]),
        helper.make_node("Add", ["mean", "tiny"], ["guarded"]),
        helper.make_node("Log", ["guarded"], ["logits"]),
        helper.make_node("Div", ["logits", "temperature"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
    ]
    k = len(info["classes"])
    graph = helper.make_graph(
        nodes,
        "digitlab-ensemble",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k]),
        ],
        [*inits, count, tiny, scale],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="digitlab",
        producer_version=str(info.get("digitlab_version", "")),
        doc_string=f"An ensemble of {len(finals)}: the mean of the members' calibrated "
        "probabilities, calibrated again by the ensemble's temperature. "
        "Input: pixels float32 (N, 1, 28, 28), 0..255 (0 = background).",
    )
    model.ir_version = min(model.ir_version, 9)
    helper.set_model_props(
        model,
        {
            "classes": json.dumps(info["classes"]),
            "members": str(len(finals)),
            "temperature": str(temperature),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def agreement(
    onnx_bytes: bytes, run: Path, info: dict, images: np.ndarray, numpy_model=None
) -> dict:
    """Probabilities for `images` from onnxruntime, the NumPy engine and the PyTorch engine,
    compared: labels must agree on every image, probabilities within TOLERANCE. `numpy_model`:
    the run already loaded on the NumPy engine, if the caller has it."""
    ort = _needs("onnxruntime", "export")
    _needs("torch", "torch")
    temperature = float(info.get("temperature", 1.0))

    def classify(model) -> np.ndarray:
        return softmax(logits(model, images), temperature)

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    pixels = images.astype(np.float32)[:, None]
    from_onnx = np.concatenate(
        [
            session.run(["probabilities"], {"pixels": pixels[i : i + 2048]})[0]
            for i in range(0, len(pixels), 2048)
        ]
    )
    numpy_model = numpy_model or runs.load_model(run, engine="numpy")
    from_numpy = classify(numpy_model)
    from_torch = classify(runs.load_model(run, engine="torch", device="cpu"))
    outputs = (from_onnx, from_numpy, from_torch)
    broken = [name for name, p in zip(RUNTIMES, outputs, strict=True) if not np.isfinite(p).all()]
    if broken:  # NaN compares unequal to nothing: without this, "disagree on 0" would pass
        raise ExportError(
            f"{run}: {', '.join(broken)} gave NaN or infinite probabilities; the weights or the "
            "temperature in model.json are unusable"
        )
    labels = [p.argmax(axis=1) for p in outputs]
    disagree = int(((labels[0] != labels[1]) | (labels[0] != labels[2])).sum())
    diff = float(max(np.abs(from_onnx - from_numpy).max(), np.abs(from_onnx - from_torch).max()))
    return {
        "images": len(images),
        "label_disagreements": disagree,
        "max_prob_diff": diff,
        "agree": disagree == 0 and diff <= TOLERANCE,
    }


def export_onnx(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    data: Dataset | None = None,
    on_event=None,
    overwrite: bool = False,
) -> dict:
    """Write the run as `out` (default RUN/model.onnx; for the built-in reader, reader.onnx here,
    never inside the installed package) once it agrees with both engines on the test set of the
    run's dataset (`data`, or opened by its ref; on its training images when it has no test
    set). Returns the path, size, the agreement figures and the split checked."""
    built_in = reader.is_built_in(run)
    run = Path(run)
    info = runs.read_info(run)
    runs.require_finished(run, info)
    spec = ModelSpec.from_dict(info["spec"])
    if out is None:
        out = Path("reader.onnx") if built_in else run / "model.onnx"
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give a file name such as {out / 'model.onnx'}")
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the file is ONNX; name it .onnx")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists; pass --overwrite to replace it")
    model = runs.load_model(run, engine="numpy")
    if info.get("kind") == KIND:
        blob = ensemble_onnx(info, model.state_dict()).SerializeToString()
    else:
        blob = onnx_model(spec, model.state_dict(), info).SerializeToString()
    ds = run_dataset(info, data, on_event)
    same_data(info, ds)
    split = "test" if ds.test is not None and len(ds.test) else "train"  # a folder without test/
    check = agreement(blob, run, info, ds.split(split).images[:CHECK_IMAGES], model) | {
        "split": split
    }
    if not check["agree"]:
        raise ExportError(
            f"{out}: not written: onnxruntime, NumPy and PyTorch disagree on "
            f"{check['label_disagreements']} of {check['images']} {split} images "
            f"(largest probability difference {check['max_prob_diff']:.2e}, allowed {TOLERANCE})"
        )
    clear_stale(out)
    write_bytes(out, blob)
    return {"path": str(out), "bytes": len(blob), "opset": OPSET, **check}


CHECK_IMAGES = 10_000  # at most: MNIST's test set, or a folder's training images without one
STALE_AFTER = 60.0  # seconds: a temporary file this old belongs to no export still writing


def clear_stale(out: Path) -> list[Path]:
    """Remove what an export of `out` killed mid-write left beside it (atomic_write's hidden
    .NAME.XXXX.tmp), once it is old enough that no export still writing can own it."""
    return remove_leftovers(out.parent, out.name, before=time.time() - STALE_AFTER)

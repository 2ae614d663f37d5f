"""Is it a digit at all? A check of each image against the digits a model learned from, so
that a letter, a symbol or a scribble is answered "unsure" instead of a confident digit.

    >>> check, record = novelty.fit(model, train_images, held_out_digits, held_out_answered)
    >>> check = novelty.load(run, info, model)       # None for a run fitted without one
    >>> check.unlike(features)                       # True where an image is unlike them all

A network trained on digits alone answers every image with a digit: of letters and symbols in
printed and handwriting fonts, the built-in reader answered 47% "ok" at its unsure threshold.
Its softmax cannot say "none of these"; the features under its last layer can. The check keeps
a sample of the training images' features (the input of the last Dense layer, unit length,
centred, reduced to their DIMS leading principal directions) and scores an image by how far it
is from its nearest one (1 - cosine similarity): a k-nearest-neighbour test of the kind Sun et
al. (2022, "Out-of-distribution detection with deep nearest neighbors") use. The threshold is
the QUANTILE of the scores of the run's own held-out digits as photos show them (jobs.calibrate
prepares them), so 1 in 100 held-out digits the run would answer "ok" is turned "unsure" by it.

Chosen on validation data only: held-out MNIST training digits, and non-digits made from them
(two digits overlaid, a digit turned 90 degrees, the top of one digit on the bottom of another).
Of the compact variants tried (2-128 dimensions, 2,000-10,000 kept, 1-10 neighbours, and a
Mahalanobis distance), 64 dimensions and the nearest of 10,000 answered the fewest of those
non-digits "ok" (32%, against 46% with the softmax threshold alone), in 1.4 MB of float16.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from digitlab.atomic import write_bytes
from digitlab.engines import build
from digitlab.engines.numpy_layers import Dense
from digitlab.preprocess import check_images, normalise
from digitlab.run_schema import RunError, read_regular

FILE = "novelty.safetensors"
DIMS = 64  # principal directions kept
KEEP = 10_000  # training images whose features are kept
FIT_IMAGES = 20_000  # training images the directions are found from (at most)
QUANTILE = 0.99  # of the held-out digits' scores: the threshold
MIN_DIGITS = 100  # held-out digits answered "ok" needed to set it (as jobs.calibrate asks)
NOTE = "unlike the digits it learned: a letter or a symbol?"
MAX_BYTES = 50_000_000


def head(model) -> Dense | None:
    """The model's last layer when the check can read features under it: a NumPy-engine Dense
    layer (None for an ensemble, or a network ending otherwise)."""
    layers = getattr(model, "layers", None)
    return layers[-1] if layers and isinstance(layers[-1], Dense) else None


def features(model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray | None:
    """Evaluation-mode features (N, D) of uint8 images (N, 28, 28): the input of the model's last
    layer, for a NumPy-engine model whose last layer is Dense (None otherwise)."""
    if head(model) is None:
        return None
    images = check_images(images, "images")
    out = []
    for i in range(0, len(images), batch_size):
        x = normalise(images[i : i + batch_size], model.mean, model.std)
        x = np.asarray(x, np.float32)
        for layer in model.layers[:-1]:
            x = layer.infer(x)
        out.append(x.reshape(len(x), -1))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def on_numpy(model):
    """The model itself when it runs on the NumPy engine, else a NumPy copy of its weights."""
    if getattr(model, "engine", None) == "numpy":
        return model
    copy = build(model.spec, "numpy")
    copy.load_state_dict(model.state_dict())
    copy.mean, copy.std = model.mean, model.std
    return copy.eval()


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


class Check:
    """A fitted check: `scores` of features, and `unlike` where a score passes the threshold."""

    def __init__(self, centre: np.ndarray, directions: np.ndarray, kept: np.ndarray, threshold):
        self.centre = np.asarray(centre, np.float32)
        self.directions = np.asarray(directions, np.float32)  # (D, DIMS)
        self.kept = np.asarray(kept, np.float32)  # (DIMS, KEEP), unit columns
        self.threshold = float(threshold)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], threshold) -> Check:
        """A check from what novelty.safetensors holds (`arrays`), in float32."""
        return cls(arrays["centre"], arrays["directions"], arrays["kept"], threshold)

    def scores(self, feats: np.ndarray) -> np.ndarray:
        """1 - the cosine similarity of each image to its nearest kept training image."""
        z = unit((unit(np.asarray(feats, np.float32)) - self.centre) @ self.directions)
        return 1.0 - (z @ self.kept).max(axis=1)

    def unlike(self, feats: np.ndarray) -> np.ndarray:
        return self.scores(feats) > self.threshold

    def fits(self, width: int, path: Path) -> Check:
        """Itself when it reads features `width` wide (the model's), else a one-line RunError."""
        if self.directions.shape[0] != width:
            raise RunError(
                f"{path}: made for features {self.directions.shape[0]} wide, and this model's "
                f"last layer reads {width}: it belongs to another model"
            )
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """What novelty.safetensors holds (float16: half the bytes, the same answers), in C
        order: safetensors writes an array's buffer as it lies, and a transposed one would come
        back scrambled."""
        arrays = {"centre": self.centre, "directions": self.directions, "kept": self.kept}
        return {k: np.ascontiguousarray(v, np.float16) for k, v in arrays.items()}


def fit(
    model, train_images: np.ndarray, digits: np.ndarray, answered: np.ndarray, seed: int = 0
) -> tuple[Check, dict] | None:
    """A check fitted on a model's training images, with its threshold from held-out `digits`
    (prepared uint8, as predict prepares photos) and which of them it `answered` "ok"; None for
    a model without a last Dense layer, or too few images to fit one (fewer than MIN_DIGITS
    held-out digits answered: one image would set the threshold)."""
    if answered.sum() < MIN_DIGITS:
        return None
    model = on_numpy(model)
    rng = np.random.default_rng(seed)
    # in the drawn order: the first KEEP are a sample of every part of the training images,
    # even where they are stored class by class
    pick = rng.permutation(len(train_images))[:FIT_IMAGES]
    feats = features(model, train_images[pick])
    if feats is None or len(feats) <= DIMS:
        return None
    f = unit(feats)
    centre = f.mean(axis=0)
    _, _, vt = np.linalg.svd(f - centre, full_matrices=False)
    directions = vt[:DIMS].T
    kept = unit((f[:KEEP] - centre) @ directions).T
    # the threshold comes from the arrays as stored (float16), as predict will compare them
    check = Check.from_arrays(Check(centre, directions, kept, 0.0).arrays(), 0.0)
    scores = check.scores(features(model, digits)[answered])
    check.threshold = float(np.quantile(scores, QUANTILE))
    record = {
        "file": FILE,
        "threshold": check.threshold,
        "quantile": QUANTILE,
        "dims": int(directions.shape[1]),
        "kept": int(kept.shape[1]),
        "how": "1 - cosine similarity to the nearest kept training image, in the leading "
        "principal directions of the last layer's input (digitlab.novelty)",
        "held_out_digits": int(answered.sum()),
    }
    return check, record


def save(run: Path, check: Check) -> str:
    """Write novelty.safetensors atomically; return its SHA-256 (model.json records it)."""
    payload = st_save(check.arrays())
    write_bytes(Path(run) / FILE, payload)
    return hashlib.sha256(payload).hexdigest()


def load(run: Path, info: dict, model=None) -> Check | None:
    """The run's check (None when model.json records none), verified against its digest and,
    given the run's (NumPy-engine) model, against the width of the features it reads."""
    record = info.get("novelty")
    if record is None:
        return None
    path = Path(run) / FILE
    payload = read_regular(path, MAX_BYTES)
    if hashlib.sha256(payload).hexdigest() != record.get("sha256"):
        raise RunError(f"{path}: does not match the checksum in model.json (damaged?)")
    try:
        check = Check.from_arrays(st_load(payload), record["threshold"])
    except Exception as e:  # a missing array or safetensors' own error types
        raise RunError(f"{path}: not a novelty check digitlab wrote ({e})") from None
    dims = check.directions.shape
    if check.centre.shape != dims[:1] or check.kept.shape[0] != dims[1]:
        raise RunError(f"{path}: its arrays do not fit together ({dims}, {check.kept.shape})")
    if model is None:
        return check
    last = head(model)  # None: nothing to read features under, so no check
    return None if last is None else check.fits(last.params["weight"].data.shape[1], path)

"""Ensembles: several finished runs read as one model, the mean of their calibrated probabilities.

    >>> jobs.make_ensemble(["runs/a", "runs/b", "runs/c"], "runs/ens")   # a run directory
    >>> digitlab evaluate runs/ens ; digitlab predict runs/ens photo.jpg ; digitlab serve runs/ens

An ensemble is a run directory like any other: model.json says `kind: ensemble` and lists its
members (spec, engine, temperature, where they came from); model.safetensors holds every
member's weights, under `m0.`, `m1.`, ... . Loaded, it is a model whose logits are the log of
the members' mean calibrated probability, so evaluate, compare, predict and serve read it as
they read one network (with temperature 1: the members' own temperatures are inside).
"""

from __future__ import annotations

import numpy as np

from digitlab.spec import ModelSpec

KIND = "ensemble"
TINY = 1e-30  # log(0) guard


class Ensemble:
    """Member models (one engine each) with their temperatures, behaving as one model."""

    def __init__(self, members: list, temperatures: list[float], spec: ModelSpec):
        self.members, self.temperatures, self.spec = members, temperatures, spec
        self.engine = members[0].engine
        self.mean, self.std = members[0].mean, members[0].std

    def normalised_logits(self, x, batch_size: int = 2048) -> np.ndarray:
        """log of the mean of the members' calibrated softmax, for normalised input x."""
        total = None
        for model, t in zip(self.members, self.temperatures, strict=True):
            z = np.asarray(model.normalised_logits(x, batch_size), np.float64) / t
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            total = p if total is None else total + p
        return np.log(total / len(self.members) + TINY).astype(np.float32)

    def eval(self) -> Ensemble:
        for model in self.members:
            model.eval()
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            f"m{i}.{k}": np.asarray(v)
            for i, model in enumerate(self.members)
            for k, v in model.state_dict().items()
        }

    @property
    def num_params(self) -> int:
        return sum(int(np.asarray(v).size) for v in self.state_dict().values())


def member_weights(weights: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    prefix = f"m{i}."
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def no_split_why(info: dict) -> str:
    """Why an ensemble's model.json has no validation split, and how its members would give
    it one."""
    none = [(m.get("train_config") or {}).get("val_split") == 0 for m in info.get("members", [])]
    why = "its members held out different images"
    if all(none):
        why = "its members held out no images (--val-split 0)"
    elif any(none):
        why = "some of its members held out no images, the others different ones"
    return f"{why}; members that hold out the same images (one --split-seed) give it one"

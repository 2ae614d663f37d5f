"""digitlab: handwritten-digit recognition, from raw MNIST files to a served model.

>>> import digitlab
>>> ds = digitlab.load("mnist")                       # verified MNIST, cached after the first call
>>> ds.train.images.shape                             # uint8, 0 = background, everywhere
(60000, 28, 28)
>>> model = digitlab.build(digitlab.PRESETS["mlp-32"].spec, "numpy", seed=0)
>>> history = digitlab.fit(model, ds.train.images, ds.train.labels, digitlab.TrainConfig(epochs=2))
>>> digitlab.logits(model, ds.test.images).argmax(1)  # uint8 in, normalised inside

Runs on disk: `train` writes one, `evaluate_run` and `compare_runs` report on them,
`load_model` loads one onto either engine, `Predictor` and `read` read real images with one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digitlab import lazy
from digitlab.errors import DataError, DigitlabError
from digitlab.version import __version__

if TYPE_CHECKING:  # the names below are imported on first use (`__getattr__`), so that
    # `import digitlab` and `digitlab --help` take a fraction of a second, not one and a half
    from digitlab.data import Dataset, Split, load, load_files
    from digitlab.engines import ENGINES, build, logits
    from digitlab.jobs import (
        compare_runs,
        evaluate_run,
        explore_dataset,
        export_onnx,
        main_job,
        plan_training,
        resume,
    )
    from digitlab.jobs import start as train_run
    from digitlab.predict import Predictor, Reading, read
    from digitlab.presets import PRESETS, RECIPES, Preset
    from digitlab.runs import RunError, load_model, read_info
    from digitlab.spec import ModelSpec, SpecError, parse_shorthand
    from digitlab.train import History, TrainConfig, TrainingDiverged, fit


# where each name lives, read from the imports above: (module, name there)
_EXPORTS = lazy.type_checking_imports(__file__)


__all__ = [
    "ENGINES",
    "PRESETS",
    "RECIPES",
    "DataError",
    "Dataset",
    "DigitlabError",
    "History",
    "ModelSpec",
    "Predictor",
    "Preset",
    "Reading",
    "RunError",
    "SpecError",
    "Split",
    "TrainConfig",
    "TrainingDiverged",
    "__version__",
    "build",
    "compare_runs",
    "evaluate_run",
    "explore_dataset",
    "export_onnx",
    "fit",
    "load",
    "load_files",
    "load_model",
    "logits",
    "main_job",
    "parse_shorthand",
    "plan_training",
    "read",
    "read_info",
    "resume",
    "train_run",
]

__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, __all__)

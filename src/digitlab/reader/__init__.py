"""The built-in reader: a run directory shipped inside the package, so digitlab reads digits
right after install, with no training.

    >>> from digitlab import Predictor
    >>> Predictor().read("photo_of_a_7.jpg")["label"]       # no RUN: the built-in reader
    >>> digitlab predict photo.jpg                           # the same, from the shell

It is trained by a recipe in the project (`digitlab train --recipe reader`) on MNIST's
training images alone; model.json records the recipe, the data, the seed, its MNIST test
accuracy, its calibration and the SHA-256 of its weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from digitlab.errors import DigitlabError

FOLDER = Path(__file__).parent  # model.json and model.safetensors, like any run directory
NAME = "reader"  # where a command takes a RUN, this name means the built-in one


def run_folder(run) -> Path:
    """The run directory `run` names: the built-in reader for None or "reader"; a DigitlabError
    for anything that names no folder (an image passed where the run goes, say)."""
    if run is None:
        return FOLDER
    if not isinstance(run, str | os.PathLike):
        raise DigitlabError(f"run: expected a run folder (a str or path), got {type(run).__name__}")
    return FOLDER if str(run) == NAME else Path(run)


def is_built_in(run) -> bool:
    """Whether `run` names the built-in reader (None, "reader" or its folder): what commands
    write for it goes beside the user, never into the installed package."""
    return run_folder(run) == FOLDER


def installed() -> bool:
    """Whether this copy of digitlab carries the reader's files."""
    return (FOLDER / "model.json").is_file() and (FOLDER / "model.safetensors").is_file()

"""The two engines behind one surface: build(spec, seed) -> Model with logits(),
predict_proba(), train_step(), state_dict() under PyTorch's names.

    >>> from digitlab.engines import get_engine
    >>> model = get_engine("numpy").build(spec, seed=0)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from digitlab.errors import DigitlabError

ENGINES = ("numpy", "torch")


def get_engine(name: str) -> ModuleType:
    """The engine module called `name` ("numpy" needs nothing; "torch" needs PyTorch)."""
    if name not in ENGINES:
        raise DigitlabError(f"--engine {name!r}: expected one of {', '.join(ENGINES)}")
    try:
        return importlib.import_module(f"digitlab.engines.{name}_engine")
    except ImportError as e:
        raise DigitlabError(
            f"engine {name!r} needs {e.name}: pip install 'digitlab[{name}]'"
        ) from None

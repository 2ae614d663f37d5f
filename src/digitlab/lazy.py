"""Names a package exports, imported from their modules the first time they are asked for.

`import digitlab` and `digitlab --help` then take a fraction of a second: training a model
need not import matplotlib, and reading a digit need not import the report's jobs.

    >>> __getattr__, __dir__ = lazy.exports(__name__, {"load": ("digitlab.data", "load")}, __all__)
"""

from __future__ import annotations

import importlib
import sys


def exports(package: str, names: dict[str, tuple[str, str]], public: list[str]):
    """(`__getattr__`, `__dir__`) for `package`: `names` maps each exported name to (module,
    the name there)."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = names[name]
        value = getattr(importlib.import_module(module), attribute)
        setattr(sys.modules[package], name, value)  # the next lookup does not come here
        return value

    def __dir__() -> list[str]:
        own = vars(sys.modules[package])
        return sorted(set(public) | {name for name in own if name.startswith("__")})

    return __getattr__, __dir__

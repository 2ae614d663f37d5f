"""Names a package exports, imported from their modules the first time they are asked for.

`import digitlab` and `digitlab --help` then take a fraction of a second: training a model
need not import matplotlib, and reading a digit need not import the report's jobs.

    if TYPE_CHECKING:  # what the names are: for type checkers, the API reference, and here
        from digitlab.data import load
    _EXPORTS = lazy.type_checking_imports(__file__)         # {"load": ("digitlab.data", "load")}
    __getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, __all__)
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path


def type_checking_imports(source: str) -> dict[str, tuple[str, str]]:
    """{name: (module, name there)} for every `from M import N [as A]` in the module's
    `if TYPE_CHECKING:` block: the one list of what a package exports."""
    tree = ast.parse(Path(source).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def exports(package: str, names: dict[str, tuple[str, str]], public: list[str]):
    """(`__getattr__`, `__dir__`) for `package`: `names` maps each exported name to (module,
    the name there)."""

    def __getattr__(name: str):
        if name not in names and not name.startswith("_"):  # a subpackage: digitlab.data
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":  # it exists, and needs what is missing
                    raise
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

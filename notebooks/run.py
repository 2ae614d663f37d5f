"""Execute the tutorial notebooks (py:percent, jupytext) and optionally keep the outputs.

    python notebooks/run.py --out docs/notebooks          # full mode: what `make notebooks` runs
    DIGITLAB_FAST=1 python notebooks/run.py 01_explore    # fast mode, outputs thrown away

Each notebook runs in a fresh temporary folder (its `runs/` go there) holding a copy of
notebooks/data/, on an IPython kernel of the interpreter running this script (a kernel spec
made on the fly, so a fresh `make venv` with the notebooks extra is all it needs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(p.stem for p in HERE.glob("[0-9][0-9]_*.py"))


KERNEL = "digitlab-notebooks"


def kernel_spec(folder: Path) -> str:
    """A kernel spec for this very interpreter under folder/kernels/, for JUPYTER_PATH: a
    `python3` spec elsewhere (~/.local/share/jupyter) may point at a Python without digitlab."""
    import json

    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (digitlab)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return str(folder)


def execute(name: str, timeout: int = 600, env: dict[str, str] | None = None):
    """Run notebooks/NAME.py top to bottom in a temporary folder; returns the executed notebook."""
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(HERE / f"{name}.py")
    for i, cell in enumerate(notebook.cells):  # stable cell ids, for the same reason
        cell.id = f"cell-{i}"
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix=f"notebook-{name}-") as work:
            jupyter_path = [kernel_spec(Path(work) / "jupyter"), os.environ.get("JUPYTER_PATH")]
            os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in jupyter_path if p)
            os.environ.update(env or {})  # the kernel inherits this process's environment
            if (HERE / "data").is_dir():
                shutil.copytree(HERE / "data", Path(work) / "data")
            client = NotebookClient(
                notebook,
                timeout=timeout,
                kernel_name=KERNEL,
                record_timing=False,  # no timestamps: a re-run differs only where outputs do
                resources={"metadata": {"path": work}},
            )
            client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    notebook.metadata["kernelspec"] = {  # what a reader's Jupyter should open it with
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    return notebook


def write(notebook, path: Path) -> None:
    """Write an executed notebook atomically (a temporary file, then a rename)."""
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    notebook.metadata.pop("jupytext", None)
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(notebook, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(NOTEBOOKS)}")
    parser.add_argument("--out", type=Path, help="write NAME.ipynb with outputs into this folder")
    args = parser.parse_args(argv)
    for name in args.names or NOTEBOOKS:
        name = Path(name).stem
        started = time.perf_counter()
        notebook = execute(name)
        if args.out:
            write(notebook, args.out / f"{name}.ipynb")
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

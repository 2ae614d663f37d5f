"""The README's Python examples run as written, on the real MNIST (so they stay true)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write run directories under ./runs
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    # the claims written beside the examples
    assert namespace["ds"].train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    accuracy = (
        namespace["model"].predict_proba(namespace["x_test"]).argmax(1)
        == namespace["ds"].test.labels
    ).mean()
    assert accuracy >= 0.98
    assert (tmp_path / "runs" / "doc-example" / "model.safetensors").exists()
    assert namespace["test"]["acc"] > 0.9

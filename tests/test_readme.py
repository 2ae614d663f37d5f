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
    accuracy = (namespace["probs"].argmax(1) == namespace["ds"].test.labels).mean()
    assert accuracy >= 0.98
    assert namespace["metrics"]["accuracy"] == namespace["test"]["acc"]
    assert repr(namespace["reader"].read(namespace["ds"].test.images[0])).startswith("Reading(")
    assert (tmp_path / "runs" / "doc-example" / "model.safetensors").exists()
    assert namespace["test"]["acc"] > 0.9
    assert namespace["seven"]["label"] == "7"
    assert [a["status"] for a in namespace["answers"]] == ["ok", "error"]
    paper = namespace["on_paper"]
    assert round(paper["threshold"], 2) == 0.92 and round(paper["coverage"], 2) == 0.96


def test_readme_spec_and_settings_files_train(tmp_path):
    from digitlab.jobs.plan import plan_training

    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    (tmp_path / "my_model.toml").write_text(blocks[0])
    (tmp_path / "train.toml").write_text(blocks[1])
    plan = plan_training(str(tmp_path / "my_model.toml"), config_file=tmp_path / "train.toml")
    assert plan.spec.name == "my-cnn" and plan.config.epochs == 3 and plan.engine == "torch"

"""The torch engine's own surface: device choice, --compile, optimizer state round trip."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra")

from digitlab import spec as S  # noqa: E402
from digitlab.engines import torch_engine as te  # noqa: E402


def test_auto_device_is_cpu_without_an_accelerator():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto picks it")
    assert te.pick_device("auto").type == "cpu"


def test_compiled_model_trains_and_keeps_plain_state_dict_names():
    model = te.build(S.mlp([32]), seed=0, device="cpu", compile=True)
    x = torch.from_numpy(
        np.random.default_rng(0).standard_normal((64, 1, 28, 28), dtype=np.float32)
    )
    y = torch.arange(64) % 10
    opt = te.make_optimizer(model, "sgd", 0.1, momentum=0.9)
    first, _ = model.train_step(x, y, opt)
    for _ in range(5):
        loss, _ = model.train_step(x, y, opt)
    assert float(loss) < float(first)
    names = set(model.state_dict())
    assert names == {"layers.1.weight", "layers.1.bias", "layers.3.weight", "layers.3.bias"}
    plain = te.build(S.mlp([32]), seed=1, device="cpu")
    plain.load_state_dict(model.state_dict())
    np.testing.assert_allclose(plain.logits(x.numpy()), model.logits(x.numpy()), atol=1e-6)


def test_optimizer_state_round_trips_through_flat_arrays():
    model = te.build(S.mlp([16]), seed=0, device="cpu")
    x = torch.rand(32, 1, 28, 28)
    y = torch.arange(32) % 10
    opt = te.make_optimizer(model, "adamw", 1e-3, weight_decay=0.01)
    model.train_step(x, y, opt)
    saved = {k: v.copy() for k, v in opt.state_dict().items()}
    twin = te.build(S.mlp([16]), seed=0, device="cpu")
    twin.load_state_dict(model.state_dict())
    twin_opt = te.make_optimizer(twin, "adamw", 1e-3, weight_decay=0.01)
    twin_opt.load_state_dict(saved)
    for m, o in ((model, opt), (twin, twin_opt)):
        m.train_step(x, y, o)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, twin.state_dict()[key], err_msg=key)

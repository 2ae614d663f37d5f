"""The torch engine's CUDA paths, run for real where a GPU is present: the data moved to the
device once, augmentation on the device, bf16 autocast, torch.compile, the RNG state of a
checkpoint, and NCCL under torchrun. `benchmarks/gpu.sh` runs this file on the GPU machine;
without CUDA every test here is skipped, and pytest -ra prints why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra")

from digitlab import spec as S  # noqa: E402
from digitlab.augment import AUGMENTATIONS  # noqa: E402
from digitlab.engines import torch_engine as te  # noqa: E402
from digitlab.engines.torch_augment import augment  # noqa: E402
from digitlab.presets import conv_block  # noqa: E402
from digitlab.train import TrainConfig, fit  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here: torch.cuda.is_available() is False"
)

CNN = S.ModelSpec(
    name="cuda-test",
    layers=[
        *conv_block(8),  # conv, batch norm, ReLU, max-pool
        S.Conv2D(16, 3, padding=1),
        S.ReLU(),
        S.MaxPool2D(2),
        S.Flatten(),
        S.Dropout(0.1),
        S.Dense(10),
    ],
)
FAST = ["--limit", "3000", "--batch-size", "64", "--lr", "0.05", "--seed", "3", "--epochs", "1"]


def test_auto_picks_the_gpu():
    assert te.pick_device("auto").type == "cuda"


def test_a_cnn_trains_on_the_gpu_in_bf16_and_reads_the_same_on_the_cpu(mnist):
    model = te.build(CNN, seed=0, device="cuda")
    config = TrainConfig(epochs=2, batch_size=128, lr=0.05, augment="affine", val_split=0.0)
    history = fit(model, mnist.train.images[:6000], mnist.train.labels[:6000], config)
    assert model.autocast  # bf16 matmuls and convolutions; the weights stay float32
    assert history.rows[1]["train_loss"] < history.rows[0]["train_loss"]
    x, y = mnist.test.images[:2000], mnist.test.labels[:2000]
    on_gpu = model.logits(x)
    assert (on_gpu.argmax(1) == y).mean() > 0.9
    cpu = te.build(CNN, seed=1, device="cpu")
    cpu.load_state_dict(model.state_dict())
    on_cpu = cpu.logits(x)
    # bf16 convolutions on the GPU, float32 on the CPU: the same digits, logits close
    assert (on_cpu.argmax(1) == on_gpu.argmax(1)).mean() > 0.99
    np.testing.assert_allclose(on_gpu, on_cpu, atol=0.25 * np.abs(on_cpu).max())


def test_the_dataset_moves_to_the_gpu_once_per_split(mnist):
    model = te.build(CNN, seed=0, device="cuda")
    images, labels = mnist.train.images[:1000], mnist.train.labels[:1000]
    order = np.arange(1000)
    first = list(model.batches(images, labels, order, 256, 0.1, 0.3))
    kept = model._data[1]
    again = list(model.batches(images, labels, order, 256, 0.1, 0.3))
    assert model._data[1] is kept and first[0][0].device.type == "cuda"
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("name", ["affine", "elastic", "real"])
def test_augmentation_on_the_gpu_matches_the_cpu_in_distribution(mnist, name):
    x = torch.from_numpy(mnist.train.images[:1024]).float().div(255).unsqueeze(1)
    aug = AUGMENTATIONS[name]
    outs = {}
    for device in ("cpu", "cuda"):
        gen = torch.Generator(device=device)
        gen.manual_seed(7)
        outs[device] = augment(x.to(device), gen, aug).cpu()
    gen = torch.Generator(device="cuda")
    gen.manual_seed(7)
    assert torch.equal(augment(x.cuda(), gen, aug).cpu(), outs["cuda"])  # a seed fixes it
    for out in outs.values():
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        assert not torch.equal(out, x)
    # different random numbers on each device, the same distribution of ink
    ink = {d: float(o.mean()) for d, o in outs.items()}
    assert abs(ink["cuda"] - ink["cpu"]) < 0.05 * ink["cpu"], ink


def test_compiled_model_trains_on_the_gpu():
    model = te.build(CNN, seed=0, device="cuda", compile=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=g).cuda()
    y = (torch.arange(256) % 10).cuda()
    opt = te.make_optimizer(model, "sgd", 0.05, momentum=0.9)
    first, _ = model.train_step(x, y, opt)
    for _ in range(10):
        loss, _ = model.train_step(x, y, opt)
    assert float(loss) < float(first)
    plain = te.build(CNN, seed=1, device="cuda")
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    with torch.no_grad():  # the compiled graph computes what the module does (TF32 aside)
        np.testing.assert_allclose(
            model.forward_module(x).cpu().numpy(), plain.module(x).cpu().numpy(), atol=2e-2
        )


def test_the_checkpointed_rng_state_replays_dropout_and_augmentation_on_the_gpu(mnist):
    model = te.build(CNN, seed=0, device="cuda")
    x = torch.from_numpy(mnist.train.images[:256]).float().div(255).unsqueeze(1).cuda()
    state = json.loads(json.dumps(model.rng_state()))  # as a checkpoint stores it
    assert "cuda" in state

    def draw():
        model.train()
        return model.module(augment(x, model.aug_gen, AUGMENTATIONS["affine"]))

    first = draw()
    model.set_rng_state(state)
    assert torch.equal(draw(), first)


def test_train_on_cuda_then_torchrun_with_nccl_give_the_same_run(mnist_home, tmp_path):
    env = os.environ | {"DIGITLAB_HOME": str(mnist_home)}
    train = ["train", "--model", "mlp:64-32", "--engine", "torch", "--device", "cuda", *FAST]

    def run(prefix: list[str], out: Path) -> dict:
        done = subprocess.run(
            [*prefix, *train, "--out", str(out)], env=env, capture_output=True, text=True,
            timeout=55,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((out / "model.json").read_text())

    plain = run([sys.executable, "-m", "digitlab.cli"], tmp_path / "plain")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1"]
    nccl = run([*torchrun, "-m", "digitlab.cli"], tmp_path / "nccl")
    assert plain["training"]["finished"] and nccl["training"]["finished"]
    assert nccl.get("processes") == 1 and "processes" not in plain  # torchrun's group joined
    assert abs(plain["test"]["acc"] - nccl["test"]["acc"]) < 0.01
    assert plain["test"]["acc"] > 0.75

"""The NumPy engine against PyTorch with the same weights: outputs, loss, every gradient,
10 optimizer steps of each optimizer and schedule, and the schedules themselves."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="parity tests need the torch extra: pip install -e '.[torch]'"
)

from digitlab import spec as S  # noqa: E402
from digitlab.engines import numpy_engine as ne  # noqa: E402
from digitlab.engines import torch_engine as te  # noqa: E402
from digitlab.engines.numpy_optim import OPTIMIZERS  # noqa: E402
from digitlab.engines.schedules import Schedule  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5  # float32 on both sides, different summation orders
IMAGE = (1, 12, 12)

SPECS = {
    "dense": S.ModelSpec(input_shape=IMAGE, layers=[S.Flatten(), S.Dense(10)]),
    "relu": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Flatten(), S.Dense(16), S.ReLU(), S.Dense(10)]
    ),
    "leaky-relu": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Flatten(), S.Dense(16), S.LeakyReLU(0.2), S.Dense(10)]
    ),
    "sigmoid": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Flatten(), S.Dense(16), S.Sigmoid(), S.Dense(10)]
    ),
    "tanh": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Flatten(), S.Dense(16), S.Tanh(), S.Dense(10)]
    ),
    "batchnorm-dense": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Flatten(), S.Dense(16), S.BatchNorm(), S.ReLU(), S.Dense(10)]
    ),
    "conv": S.ModelSpec(input_shape=IMAGE, layers=[S.Conv2D(4, 3), S.Flatten(), S.Dense(10)]),
    "conv-stride2-pad2": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Conv2D(4, 5, stride=2, padding=2), S.Flatten(), S.Dense(10)]
    ),
    "maxpool": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Conv2D(3, 3), S.MaxPool2D(2), S.Flatten(), S.Dense(10)]
    ),
    "maxpool-3-stride2": S.ModelSpec(
        input_shape=IMAGE,
        layers=[S.Conv2D(3, 3), S.MaxPool2D(3, stride=2), S.Flatten(), S.Dense(10)],
    ),
    "batchnorm-conv": S.ModelSpec(
        input_shape=IMAGE,
        layers=[S.Conv2D(4, 3), S.BatchNorm(), S.ReLU(), S.Flatten(), S.Dense(10)],
    ),
    "dropout-eval": S.ModelSpec(
        input_shape=IMAGE, layers=[S.Flatten(), S.Dense(16), S.Dropout(0.5), S.Dense(10)]
    ),
    "mlp": S.ModelSpec(
        input_shape=(1, 28, 28),
        layers=[S.Flatten(), S.Dense(64), S.ReLU(), S.Dense(32), S.ReLU(), S.Dense(10)],
    ),
    "small-cnn": S.ModelSpec(
        input_shape=(1, 28, 28),
        layers=[
            S.Conv2D(8, 3, padding=1),
            S.BatchNorm(),
            S.ReLU(),
            S.MaxPool2D(2),
            S.Conv2D(16, 3),
            S.ReLU(),
            S.MaxPool2D(2),
            S.Flatten(),
            S.Dense(32),
            S.ReLU(),
            S.Dropout(0.0),
            S.Dense(10),
        ],
    ),
}


def twins(spec: S.ModelSpec, seed: int = 0):
    """A NumPy model and a torch model holding the same weights."""
    ours = ne.build(spec, seed=seed)
    theirs = te.build(spec, seed=seed, device="cpu")
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def batch(spec: S.ModelSpec, n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *spec.input_shape), dtype=np.float32)  # normalised pixels
    return x, rng.integers(0, spec.num_classes, n)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_forward_loss_and_every_gradient_match_torch(name, smoothing):
    spec = SPECS[name]
    ours, theirs = twins(spec)
    training = not name.endswith("eval")
    ours.train(training)
    theirs.train(training)
    x, y = batch(spec)

    logits = ours.forward(x)
    loss, dlogits = ne.softmax_cross_entropy(logits, y, smoothing)
    dx = ours.input_gradient(dlogits)

    tx = torch.from_numpy(x).requires_grad_(True)
    t_logits = theirs.module(tx)
    t_loss = torch.nn.functional.cross_entropy(
        t_logits, torch.from_numpy(y), label_smoothing=smoothing
    )
    t_loss.backward()

    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    t_params = dict(theirs.module.named_parameters())
    for pname, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, t_params[pname].grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=pname
        )
    # batch norm's running statistics move the same way
    t_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, t_state[key], rtol=RTOL, atol=ATOL, err_msg=key)


def test_a_relu_before_a_pool_runs_after_it_with_the_same_results():
    """Both engines run a ReLU followed by a MaxPool2D pool first (spec.run_order, a quarter of
    the values for the ReLU); torch layers in the spec's own order, with the same weights, give
    the same logits and every gradient."""
    spec = SPECS["small-cnn"]
    order = S.run_order(spec.layers)
    assert order[:7] == [0, 1, 3, 2, 4, 6, 5] and order[7:] == list(range(7, len(spec.layers)))
    ours, theirs = twins(spec)
    ran = list(theirs.module.layers)
    assert [type(m).__name__ for m in ran[2:4]] == ["MaxPool2d", "ReLU"]
    as_written = torch.nn.Sequential(*[ran[order.index(i)] for i in range(len(ran))])
    assert [type(m).__name__ for m in as_written[2:4]] == ["ReLU", "MaxPool2d"]
    x, y = batch(spec, 32)
    logits = ours.forward(x)
    _, dlogits = ne.softmax_cross_entropy(logits, y)
    ours.backward(dlogits)
    t_logits = as_written(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=RTOL, atol=ATOL)
    for pname, p in ours.named_parameters():
        grad = as_written.get_parameter(pname.removeprefix("layers.")).grad
        np.testing.assert_allclose(p.grad, grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=pname)


def test_eval_mode_predictions_match_and_weights_round_trip():
    spec = SPECS["small-cnn"]
    ours, theirs = twins(spec)
    x, y = batch(spec, 64)
    for _ in range(3):  # move the batch-norm statistics away from their initial values
        ours.train_step(x, y, ne.SGD(ours.parameters(), lr=0.05))
    theirs.load_state_dict(ours.state_dict())
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=1e-4, atol=1e-6)
    assert (ours.predict_proba(x).argmax(1) == theirs.predict_proba(x).argmax(1)).all()
    back = ne.build(spec, seed=99)
    back.load_state_dict(theirs.state_dict())
    np.testing.assert_array_equal(back.logits(x), ours.logits(x))


OPTIMIZER_CASES = {
    "sgd": ("sgd", {"lr": 0.1}),
    "sgd-momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
    "sgd-nesterov-wd": (
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    ),
    "sgd-dampening": ("sgd", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3}),
    "adam": ("adam", {"lr": 1e-3}),
    "adam-l2": ("adam", {"lr": 1e-3, "weight_decay": 1e-2, "betas": (0.8, 0.99)}),
    "adamw": ("adamw", {"lr": 2e-3, "weight_decay": 0.1}),
}
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def torch_scheduler(opt, schedule: Schedule):
    lrs = torch.optim.lr_scheduler
    total, w = schedule.total_steps, schedule.warmup_steps
    match schedule.name:
        case "constant":
            main = lrs.ConstantLR(opt, factor=1.0, total_iters=0)
        case "step":
            main = lrs.StepLR(opt, step_size=schedule.step_size, gamma=schedule.gamma)
        case "cosine":
            main = lrs.CosineAnnealingLR(opt, T_max=total - w, eta_min=schedule.eta_min)
        case "onecycle":
            main = lrs.OneCycleLR(
                opt, max_lr=schedule.base_lr, total_steps=total, cycle_momentum=False
            )
    if not w:
        return main
    warm = lrs.LinearLR(opt, start_factor=schedule.warmup_start, total_iters=w)
    return lrs.SequentialLR(opt, [warm, main], milestones=[w])


def run_both(spec, optimizer: str, kwargs: dict, schedule: Schedule, steps: int = 10):
    ours, theirs = twins(spec, seed=1)
    opt = OPTIMIZERS[optimizer](ours.parameters(), **kwargs)
    t_opt = TORCH_OPTIMIZERS[optimizer](theirs.module.parameters(), **kwargs)
    t_sched = torch_scheduler(t_opt, schedule)
    for step in range(steps):
        x, y = batch(spec, 32, seed=step)
        opt.lr = schedule.lr(step)
        assert opt.lr == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        ours.train_step(x, y, opt)
        t_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            theirs.module(torch.from_numpy(x)), torch.from_numpy(y)
        )
        loss.backward()
        t_opt.step()
        t_sched.step()
    return ours.state_dict(), theirs.state_dict()


@pytest.mark.parametrize("case", list(OPTIMIZER_CASES))
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ten_steps_of_each_optimizer_match_torch(case):
    optimizer, kwargs = OPTIMIZER_CASES[case]
    schedule = Schedule("constant", base_lr=kwargs["lr"], total_steps=10)
    ours, theirs = run_both(SPECS["mlp"], optimizer, kwargs, schedule)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=2e-5, err_msg=key)


SCHEDULE_CASES = {
    "step": Schedule("step", base_lr=0.1, total_steps=10, step_size=3, gamma=0.5),
    "cosine": Schedule("cosine", base_lr=0.1, total_steps=10, eta_min=0.001),
    "onecycle": Schedule("onecycle", base_lr=0.1, total_steps=10),
    "cosine-warmup": Schedule("cosine", base_lr=0.1, total_steps=10, warmup_steps=3),
    "step-warmup": Schedule(
        "step", base_lr=0.1, total_steps=10, warmup_steps=2, step_size=2, gamma=0.7
    ),
}


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adamw"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ten_steps_with_each_schedule_match_torch(case, optimizer):
    name, kwargs = OPTIMIZER_CASES[optimizer]
    schedule = SCHEDULE_CASES[case]
    kwargs = kwargs | {"lr": schedule.base_lr / (1 if name == "sgd" else 50)}
    schedule = Schedule(**{**schedule.__dict__, "base_lr": kwargs["lr"]})
    # no conv bias before batch norm: its true gradient is 0, and Adam would amplify float noise
    spec = S.ModelSpec(
        input_shape=IMAGE,
        layers=[S.Conv2D(4, 3, bias=False), S.BatchNorm(), S.ReLU(), S.Flatten(), S.Dense(10)],
    )
    ours, theirs = run_both(spec, name, kwargs, schedule)
    # Adam divides by √v: where a gradient is nearly 0 (conv weights ahead of batch norm),
    # float32 noise turns into steps of up to lr; 1e-4 is under 1% of 10 steps at lr 2e-3
    atol = 2e-5 if name == "sgd" else 1e-4
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=atol, err_msg=key)


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_schedule_values_match_torch_over_a_long_run(case):
    base = SCHEDULE_CASES[case]
    schedule = Schedule(
        **{
            **base.__dict__,
            "total_steps": 500,
            "step_size": 60,
            "warmup_steps": base.warmup_steps * 20,
        }
    )
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule.base_lr)
    sched = torch_scheduler(opt, schedule)
    for step in range(schedule.total_steps):
        assert schedule.lr(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-12), (
            step
        )
        opt.step()
        sched.step()


@pytest.mark.parametrize(
    ("init", "torch_init"),
    [
        ("default", None),  # torch.nn's own reset_parameters
        ("he_uniform", lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu")),
        ("he_normal", lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu")),
        ("glorot_uniform", torch.nn.init.xavier_uniform_),
        ("glorot_normal", torch.nn.init.xavier_normal_),
    ],
)
@pytest.mark.parametrize("layer", ["dense", "conv"])
def test_initial_weights_follow_torchs_distributions(init, torch_init, layer):
    if layer == "dense":
        spec = S.ModelSpec(
            input_shape=(1, 20, 20), layers=[S.Flatten(), S.Dense(300, init=init), S.Dense(10)]
        )
    else:
        spec = S.ModelSpec(
            input_shape=(16, 8, 8), layers=[S.Conv2D(64, 5, init=init), S.Flatten(), S.Dense(10)]
        )
    ours = ne.build(spec, seed=0).state_dict()
    module = te.build(spec, seed=0, device="cpu").module
    key = "layers.1.weight" if layer == "dense" else "layers.0.weight"
    theirs = dict(module.named_parameters())[key].detach()
    if torch_init is not None:
        torch_init(theirs)
    ours_w, theirs_w = ours[key], theirs.numpy()
    assert ours_w.std() == pytest.approx(theirs_w.std(), rel=0.05)  # same spread
    assert abs(ours_w.mean()) < 0.1 * ours_w.std()  # centred
    if "uniform" in init or init == "default":  # same bounds
        assert np.abs(ours_w).max() == pytest.approx(np.abs(theirs_w).max(), rel=0.02)

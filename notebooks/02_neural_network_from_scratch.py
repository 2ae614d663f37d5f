# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. A neural network from scratch
#
# digitlab's NumPy engine is a neural-network library small enough to read: each layer is a
# class with a `forward` and a hand-written `backward`, in plain NumPy. This notebook uses
# those layers directly to show the four ideas a network is made of:
#
# 1. the **forward pass**: layers turn an image into ten scores (logits);
# 2. the **loss**: softmax cross-entropy says how wrong the scores are;
# 3. **backpropagation**: the chain rule, layer by layer from the loss back to every weight;
# 4. **gradient descent**: nudge every weight against its gradient, and repeat.
#
# Along the way we check the hand-written gradients against finite differences, live, then
# train a small network and look inside it. Set `DIGITLAB_FAST=1` to train on less data.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import digitlab
from digitlab import plots
from digitlab import spec as S
from digitlab.engines import numpy_engine
from digitlab.preprocess import normalise
from digitlab.train import TrainConfig, fit

FAST = os.environ.get("DIGITLAB_FAST") == "1"


def show(fig) -> None:
    """Display a matplotlib figure as a PNG."""
    display(Image(plots.figure_bytes(fig)))


ds = digitlab.load("mnist")
x_test = normalise(ds.test.images)  # float32 (10000, 1, 28, 28), mean 0, std 1
y_test = ds.test.labels

# %% [markdown]
# ## A model is a list of layers
#
# A `ModelSpec` describes the network as data: flatten the 28×28 image into 784 numbers, a
# dense layer of 64 units, a ReLU, and a dense layer with one output per class. Both of
# digitlab's engines build the same spec; here the NumPy one does.

# %%
spec = S.ModelSpec(
    input_shape=(1, 28, 28),
    num_classes=10,
    layers=[S.Flatten(), S.Dense(64), S.ReLU(), S.Dense(10)],
)
model = numpy_engine.build(spec, seed=0)
for i, (layer, shape) in enumerate(zip(model.layers, spec.output_shapes(), strict=True)):
    params = {name: p.data.shape for name, p in layer.params.items()}
    print(f"layer {i}: {type(layer).__name__:8} output {shape}  parameters {params}")
print("parameters in all:", sum(p.data.size for p in model.parameters()))

# %% [markdown]
# ## 1. The forward pass
#
# Each layer's `forward` takes the previous layer's output. `Dense` computes
# $y = x W^\top + b$ with $W$ of shape (out, in), as `torch.nn.Linear` does; `ReLU` keeps the
# positive part. We push a batch of 8 training images through by hand and compare with
# `model.logits`, which does the same loop.

# %%
x = normalise(ds.train.images[:8])  # (8, 1, 28, 28)
labels = ds.train.labels[:8]
h = x
for layer in model.layers:
    h = layer.forward(h, training=False)
    print(f"{type(layer).__name__:8} -> {h.shape}")
logits = h
print("same as model.logits:", np.allclose(logits, model.logits(x), atol=1e-5))
print("logits of the first image:", np.round(logits[0], 2))

# %% [markdown]
# ## 2. The loss
#
# Softmax turns logits into probabilities, $p_k = e^{z_k} / \sum_j e^{z_j}$; the
# cross-entropy is $-\log p_y$ for the true class $y$, averaged over the batch. An untrained
# network guesses about uniformly, so its loss starts near $\ln 10 \approx 2.30$.
#
# The gradient of this loss with respect to the logits is beautifully simple:
# $\partial L / \partial z = (p - \text{one\_hot}(y)) / N$. digitlab computes the loss and
# this gradient together (`softmax_cross_entropy`), with the log-sum-exp trick so that large
# logits never overflow.

# %%
loss, dlogits = numpy_engine.softmax_cross_entropy(logits, labels)
print(f"loss {loss:.3f} (ln 10 = {np.log(10):.3f})")
print("N × gradient, first image (p - one_hot):", np.round(dlogits[0] * len(labels), 3))
print("true label:", labels[0], "(the only negative entry)")

# %% [markdown]
# ## 3. Backpropagation
#
# The chain rule, applied backwards. Each layer's `backward` receives the gradient of the
# loss with respect to its output and returns the gradient with respect to its input, filling
# the gradients of its own parameters on the way. For `Dense`:
# $\partial L/\partial W = \delta^\top x$, $\partial L/\partial b = \sum \delta$ and
# $\partial L/\partial x = \delta W$. For `ReLU`, the gradient passes where the input was
# positive and stops elsewhere.

# %%
h = x
for layer in model.layers:  # a training-mode forward pass keeps what backward needs
    h = layer.forward(h, training=True)
_, dlogits = numpy_engine.softmax_cross_entropy(h, labels)
grad = dlogits
for layer in reversed(model.layers):
    grad = layer.backward(grad)
for name, p in model.named_parameters():
    print(f"{name:16} gradient {p.grad.shape}, norm {np.linalg.norm(p.grad):.4f}")

# %% [markdown]
# ## Is the gradient right? A gradient check
#
# Hand-written backward passes are easy to get subtly wrong. The test is the definition of a
# derivative: nudge one weight by $\pm h$ and see how the loss changes,
# $(L(w+h) - L(w-h)) / 2h$. In float64 the two must agree to about six digits. digitlab's
# test suite does this for every layer type (`tests/test_gradcheck.py`); here is the check
# live, on a few weights of each parameter of a small float64 network.

# %%
check_model = numpy_engine.build(spec, seed=1, dtype=np.float64)
xc, yc = x.astype(np.float64), labels


def loss_of(m) -> float:
    return numpy_engine.softmax_cross_entropy(m.forward(xc), yc)[0]


check_model.train()
_, d = numpy_engine.softmax_cross_entropy(check_model.forward(xc), yc)
check_model.backward(d)
rng = np.random.default_rng(0)
step = 1e-6
print(f"{'parameter':16} {'index':>10} {'backprop':>13} {'numeric':>13}  rel. error")
worst = 0.0
for name, p in check_model.named_parameters():
    analytic = p.grad.copy()
    # weights of a unit silent on all 8 images have a zero gradient: check ones that matter
    nonzero = np.argwhere(np.abs(analytic) > 1e-5)
    for i in nonzero[rng.choice(len(nonzero), 3, replace=False)]:
        i = tuple(int(j) for j in i)
        old = p.data[i]
        p.data[i] = old + step
        up = loss_of(check_model)
        p.data[i] = old - step
        down = loss_of(check_model)
        p.data[i] = old
        numeric = (up - down) / (2 * step)
        error = abs(analytic[i] - numeric) / (abs(analytic[i]) + abs(numeric))
        worst = max(worst, error)
        print(f"{name:16} {i!s:>10} {analytic[i]:13.8f} {numeric:13.8f}  {error:.1e}")
print(f"largest relative error: {worst:.1e}")

# %% [markdown]
# ## 4. Gradient descent, by hand
#
# Now learn: take a mini-batch, run forward, compute the loss and its gradient, backpropagate,
# and move every parameter a small step against its gradient, $w \leftarrow w - \eta\,
# \partial L/\partial w$. Repeat with the next batch. Nothing else is needed.

# %%
n_train = 10_000 if FAST else 60_000
images, targets = ds.train.images[:n_train], ds.train.labels[:n_train]
x_train = normalise(images)
model = numpy_engine.build(spec, seed=0)
lr, batch = 0.1, 64
losses = []
order = np.random.default_rng(0).permutation(n_train)
for start in range(0, n_train, batch):
    idx = order[start : start + batch]
    model.train()
    loss, d = numpy_engine.softmax_cross_entropy(model.forward(x_train[idx]), targets[idx])
    model.backward(d)
    for p in model.parameters():
        p.data -= lr * p.grad
    losses.append(loss)
accuracy = (model.predict_proba(x_test).argmax(1) == y_test).mean()
print(f"one pass over {n_train} images, {len(losses)} steps: test accuracy {accuracy:.2%}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses, linewidth=0.6, alpha=0.5, label="each batch")
smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
ax.plot(np.arange(19, len(losses)), smooth, label="mean of 20")
ax.set(xlabel="step", ylabel="cross-entropy", title="the loss falls as the weights learn")
ax.legend()
show(fig)

# %% [markdown]
# ## The same, with an optimizer and the training loop
#
# The loop above is plain SGD. `numpy_engine.SGD` adds momentum (and Nesterov, weight
# decay) with exactly `torch.optim.SGD`'s semantics, and `digitlab.train.fit` adds shuffling
# every epoch, a learning-rate schedule (one-cycle by default), validation and callbacks. A
# few epochs take the same network well past the hand-written loop.

# %%
model = numpy_engine.build(spec, seed=0)
config = TrainConfig(epochs=2 if FAST else 8, lr=0.05, val_split=0.1)
history = fit(model, images, targets, config)
for row in history.rows:
    print(
        f"epoch {row['epoch']}: train acc {row['train_acc']:.3f}, "
        f"val acc {row['val_acc']:.3f}, {row['seconds']:.1f} s"
    )
probs = model.predict_proba(x_test)
accuracy = (probs.argmax(1) == y_test).mean()
print(f"test accuracy: {accuracy:.2%}")

# %% [markdown]
# ## Looking inside: what the first layer learned
#
# Each of the 64 hidden units has one weight per pixel, so its weights can be drawn as a
# 28×28 image: red where ink raises the unit's activation, blue where ink lowers it. Many
# look like strokes or pieces of digits. The edge pixels, blank in every image, never
# receive a gradient and keep their small random initial values, and the odd unit looks like
# pure noise: it is rarely active, so it learned little.

# %%
w = model.state_dict()["layers.1.weight"]  # (64, 784): PyTorch's layout and name
tiles = (w / np.abs(w).max(axis=1, keepdims=True)).reshape(4, 16, 28, 28)  # each unit in -1..1
mosaic = np.full((4, 16, 30, 30), np.nan)  # a 1-pixel blank border around each unit
mosaic[:, :, 1:29, 1:29] = tiles
cmap = plt.get_cmap("RdBu_r").copy()
cmap.set_bad("white")
fig = plt.figure(figsize=(9.6, 2.7))
ax = fig.add_axes((0, 0, 1, 0.9))
mosaic = mosaic.transpose(0, 2, 1, 3).reshape(120, 480)
ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
ax.set_axis_off()
fig.suptitle("first-layer weights of the 64 hidden units (red: ink here excites the unit)")
show(fig)

# %% [markdown]
# ## Activations: how a digit is represented
#
# Pass one test digit of each class through the first two layers and look at the 64 hidden
# activations after ReLU. Each digit lights up its own pattern of units, and many units are
# silent (zero) for any one image: the network's code is sparse. The last layer only has to
# read these patterns.

# %%
picks = [int(np.flatnonzero(y_test == c)[0]) for c in range(10)]
hidden = x_test[picks]
for layer in model.layers[:3]:  # Flatten, Dense, ReLU
    hidden = layer.forward(hidden, training=False)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [0.5, 10]})
left.imshow(np.vstack(ds.test.images[picks]), cmap="gray")  # one digit per row of the map
left.set_axis_off()
im = right.imshow(hidden, aspect="auto", cmap="viridis")
right.set(xlabel="hidden unit", ylabel="digit", yticks=range(10))
right.set_title("the 64 hidden activations after ReLU, one test digit per row", fontsize=9)
fig.colorbar(im, ax=right)
fig.tight_layout()
show(fig)
print(f"share of silent units per image: {(hidden == 0).mean():.0%}")

# %% [markdown]
# ## Where it goes wrong
#
# The mistakes the network makes with the most confidence. Some are sloppy handwriting that a
# person would read; some are digits a person would get wrong too.

# %%
wrong = np.flatnonzero(probs.argmax(1) != y_test)
worst = wrong[np.argsort(-probs[wrong].max(1))][:16]
show(
    plots.sample_grid(
        ds.test.images[worst],
        None,
        ds.classes,
        columns=8,
        captions=[f"{y_test[i]}→{probs[i].argmax()} {probs[i].max():.0%}" for i in worst],
        title="confident mistakes (true → predicted, confidence)",
    )
)

# %% [markdown]
# ## Further
#
# The same engine has `Conv2D` (im2col), `MaxPool2D`, `BatchNorm`, `Dropout` and the Adam
# and AdamW optimizers, and each is checked against PyTorch with the same weights in
# `make test`. Read `src/digitlab/engines/numpy_engine.py` top to bottom: it is one sitting.
#
# Next: [3. Train, evaluate and compare](03_train_evaluate_compare.ipynb).

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
# # 4. Your own digits
#
# A model with 99% test accuracy on MNIST can still get your handwriting wrong, and the reason
# is rarely the model: a photo of a digit looks nothing like an MNIST image. MNIST digits are
# white on black, 20×20 pixels inside a 28×28 box, centred by centre of mass; a photo is dark
# ink on grey paper, unevenly lit, off-centre, hundreds of pixels wide, and JPEG-compressed.
#
# This notebook trains a small CNN, reads a photo of a handwritten 7 step by step, reads a
# whole number, and exports the model to ONNX so that it runs anywhere. To read your own
# photo, set `DIGITLAB_PHOTO=path/to/photo.jpg` (one digit, any size, dark ink on paper).
#
# `DIGITLAB_FAST=1` trains on 10,000 images for two epochs instead of all 60,000.

# %%
import dataclasses
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image as Picture
from IPython.display import display
from PIL import Image

import digitlab
from digitlab import ink, jobs, plots
from digitlab.jobs.export import export_onnx
from digitlab.predict import Predictor
from digitlab.presets import PRESETS

FAST = os.environ.get("DIGITLAB_FAST") == "1"
PHOTO = Path(os.environ.get("DIGITLAB_PHOTO", "data/seven.jpg"))
NUMBER = Path("data/number.jpg")
RUN = Path("runs/cnn-small")


def show(fig) -> None:
    """Display a matplotlib figure as a PNG."""
    display(Picture(plots.figure_bytes(fig)))


# %% [markdown]
# ## A model to read with
#
# The `cnn-small` preset (two 3×3 convolutions with max-pooling, then a dense layer) reaches
# about 99% in under 20 seconds on two CPU cores. It trains on the PyTorch engine; reading
# digits afterwards uses the NumPy engine, which loads the same weights.

# %%
preset = PRESETS["cnn-small"]
config = dataclasses.replace(preset.config, epochs=2) if FAST else preset.config
_, history, test = jobs.start(
    RUN, preset.spec, "torch", config, limit=10_000 if FAST else None, overwrite=True
)
print(f"cnn-small: {len(history.rows)} epochs, test accuracy {test['acc']:.2%}")
reader = Predictor(RUN)

# %% [markdown]
# ## A photo
#
# The photo below (`notebooks/data/seven.jpg`) is an MNIST test digit written as dark ink on
# paper and photographed the way a phone would: scaled up, off-centre, unevenly lit, a little
# noisy, saved as a JPEG.

# %%
photo = Image.open(PHOTO)
print(f"{PHOTO}: {photo.size[0]}×{photo.size[1]} pixels, mode {photo.mode}")
fig, ax = plt.subplots(figsize=(3.5, 3.5))
ax.imshow(photo, cmap="gray")
ax.set_axis_off()
show(fig)

# %% [markdown]
# ## The naive way, and why it fails
#
# Shrink the photo to 28×28 and hand it to the model. The model has never seen dark ink on a
# light background, a digit that fills a corner, or grey paper: its answer is a guess.

# %%
naive = np.asarray(photo.convert("L").resize((28, 28), Image.Resampling.BILINEAR))
p = reader.probabilities(naive[None])[0]
print(f"naive: reads {p.argmax()} with {p.max():.0%} confidence")

# %% [markdown]
# ## Preprocessing, step by step
#
# `digitlab.ink.prepare` turns any image into what MNIST looks like, and returns every
# intermediate image so you can see what the model is shown:
#
# 1. **gray**: the photo in grayscale, at a working size;
# 2. **background**: the paper, estimated by filtering out the strokes and blurring widely,
#    so uneven lighting cancels out;
# 3. **ink**: the photo minus the paper, inverted so that ink is bright, as in MNIST;
# 4. **mask**: Otsu's threshold separates ink from paper; specks are dropped;
# 5. **cropped**: the ink's bounding box;
# 6. **MNIST style**: scaled into 20×20 keeping its aspect ratio, placed in 28×28 and centred
#    by centre of mass, exactly as MNIST's digits were made.

# %%
digit, steps = ink.prepare(PHOTO)
show(plots.steps_figure(steps, title=f"reading {PHOTO.name}"))

# %% [markdown]
# Side by side with real MNIST sevens, the prepared photo is hard to tell apart.

# %%
ds = digitlab.load("mnist")
sevens = ds.test.images[ds.test.labels == 7][:7]
show(
    plots.sample_grid(
        np.concatenate([digit[None], sevens]),
        None,
        ds.classes,
        columns=8,
        captions=["the photo", *["MNIST"] * 7],
    )
)

# %% [markdown]
# ## Predict
#
# `Predictor(run).read(image)` does both steps, preparation and the model, and answers with a
# label, its confidence, the next guesses, and a status: `ok`, `unsure` (the top probability
# is below 0.6) or `no digit found` (a blank page).

# %%
answer = reader.read(PHOTO)
print(f"{answer['status']}: {answer['label']} ({answer['confidence']:.1%})")
for guess in answer["top"]:
    print(f"  {guess['label']}: {guess['p']:.2%}")

# %% [markdown]
# ## A whole number
#
# `read_number` reads a row of digits: `ink.segment` straightens the row, groups connected
# strokes into digits, and where two digits touch it tries each plausible cut and keeps the
# one the model trusts most. The answer is the number, its confidence (the product of the
# digits'), and each digit's box in the photo.

# %%
number = reader.read_number(NUMBER)
print(f"{number['status']}: {number['number']} ({number['confidence']:.1%})")
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 2.8), gridspec_kw={"width_ratios": [2, 1.2]})
left.imshow(Image.open(NUMBER), cmap="gray")
for d in number["digits"]:
    x0, y0, x1, y1 = d["box"]
    left.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="tab:red"))
    left.text(x0, y0 - 4, f"{d['label']} {d['confidence']:.0%}", color="tab:red", fontsize=9)
left.set_axis_off()
right.imshow(np.hstack([d["digit"] for d in number["digits"]]), cmap="gray")
right.set_title("what the model saw", fontsize=9)
right.set_axis_off()
fig.tight_layout()
show(fig)

# %% [markdown]
# ## Export to ONNX
#
# `export_onnx` writes the model as one `.onnx` file, built from the spec and the weights
# (no tracing), with the normalisation inside the graph: its input `pixels` is float32
# (N, 1, 28, 28) in MNIST's 0..255. Before the file is written, all 10,000 test images run
# through onnxruntime, the NumPy engine and the PyTorch engine; unless every label agrees and
# every probability is within 1e-4, nothing is written.

# %%
exported = export_onnx(RUN, RUN / "model.onnx")
print(
    f"{exported['path']}: {exported['bytes']:,} bytes, opset {exported['opset']}; "
    f"{exported['images']:,} test images, {exported['label_disagreements']} disagreements, "
    f"largest probability difference {exported['max_prob_diff']:.1e}"
)

# %% [markdown]
# Any ONNX runtime can now read digits, with no digitlab and no PyTorch: here onnxruntime
# reads the digit prepared from the photo.

# %%
import onnxruntime  # noqa: E402 (only the export needs it)

session = onnxruntime.InferenceSession(str(RUN / "model.onnx"))
pixels = digit.astype(np.float32)[None, None]  # (1, 1, 28, 28), 0..255
(probabilities,) = session.run(["probabilities"], {"pixels": pixels})
print(f"onnxruntime reads {probabilities[0].argmax()} ({probabilities[0].max():.1%})")
print(f"digitlab reads    {answer['label']} ({answer['confidence']:.1%})")

# %% [markdown]
# ## From here
#
# ```bash
# digitlab predict runs/cnn-small my_photo.jpg --show-steps steps.png
# digitlab predict runs/cnn-small postcode.jpg --number
# digitlab export runs/cnn-small --format onnx --out cnn.onnx
# digitlab serve runs/cnn-small      # a page to draw digits on, and a JSON API
# ```

"""Training a line reader (`digitlab train --recipe reader-lines`): CTC on synthetic rows.

    >>> info = train_lines("runs/lines", mnist)     # lines.json + lines.safetensors, and its record
    >>> combine("runs/ens", ["runs/a", "runs/b"], mnist)  # line readers averaged, calibrated

The rows are made by `ink.synth` from MNIST's *training* digits, less the 10% that the
built-in reader holds out (the same stratified split, seed 0): those held-out digits make the
validation rows that report the reader's accuracy, and the rows on paper (`ink.paper`: written
in a row, in boxes, on a ruled line, with separators; photographed) that fit its temperature.
No other source of digits is used, so every benchmark set measures how it generalises.

Recipe: SAMPLES rows made once (in a process per core), EPOCHS passes in batches of BATCH rows
of similar width, AdamW with a one-cycle learning rate, PyTorch's CTC loss. After training, the
temperature that makes a row's confidence (`sequence.reading`: the product of its symbols'
probabilities) the chance that the whole row is read right is fitted on the rows on paper.
The synthetic rows are harder than writing on paper (worn on purpose): a temperature fitted
on them left the confidence of numbers on paper 3-5 points under their accuracy.

The recipe trains MEMBERS such readers with consecutive seeds (each a complete line reader in
out/members/seedS) and ships their ensemble (`combine`): the mean of their log-probabilities,
with its own temperature fitted the same way. Two seeds together read 0.7-1.8 points more of
the held-out rows on paper than either alone (three sets of 1,000), for twice the network's
time.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_arrays

from digitlab import atomic, version
from digitlab.augment import AUGMENTATIONS
from digitlab.data.dataset import Split
from digitlab.errors import DigitlabError
from digitlab.evaluate import reliability_of
from digitlab.ink import paper, row_ink
from digitlab.ink.synth import ALPHABET, RowMaker
from digitlab.sequence import (
    ALTERNATIVES,
    FILES,
    MEAN,
    STD,
    STRIDE,
    LineReader,
    build_torch,
    fold,
    reading,
)
from digitlab.train import stratified_split

SAMPLES = 128_000
EPOCHS = 4
BATCH = 64
LR = 2e-3
VALIDATION_ROWS = 2000  # synthetic rows from the held-out digits
PAPER_ROWS = 1000  # rows on paper from the held-out digits, that fit the temperature
FLAGGED_ONES = AUGMENTATIONS["real"].flag  # rows' 1s flagged as the reader's digits are
MEMBERS = 2  # averaged: held-out rows read exactly, 2 seeds 93.9-95.0%, one 93.0-94.2%
PAPER_SEED = 100  # the reading benchmark's sets use seeds 2-9 (and MNIST's test digits)
_maker: RowMaker | None = None  # each generating process's own


def _start(images: np.ndarray, labels: np.ndarray) -> None:
    global _maker
    _maker = RowMaker(images, labels, FLAGGED_ONES)


def _make(job: tuple[int, int, int]) -> list[tuple[np.ndarray, str]]:
    seed, stream, count = job
    rng = np.random.default_rng([seed, stream])
    assert _maker is not None
    return [_maker.sample(rng) for _ in range(count)]


def make_rows(images, labels, count: int, seed: int, workers: int) -> list:
    """`count` synthetic rows, made in `workers` processes (the same rows for any count of
    workers: each chunk of 1,000 has its own random stream)."""
    jobs = [(seed, i, min(1000, count - start)) for i, start in enumerate(range(0, count, 1000))]
    if workers <= 1:
        _start(images, labels)
        return [row for job in jobs for row in _make(job)]
    with ProcessPoolExecutor(workers, initializer=_start, initargs=(images, labels)) as pool:
        return [row for chunk in pool.map(_make, jobs) for row in chunk]


def batch(rows: list, picks) -> tuple:
    """Rows padded to the widest (a multiple of STRIDE), normalised; CTC targets and lengths."""
    import torch

    width = -(-max(rows[i][0].shape[1] for i in picks) // STRIDE) * STRIDE
    x = np.zeros((len(picks), 1, rows[picks[0]][0].shape[0], width), np.float32)
    targets, frames, lengths = [], [], []
    for k, i in enumerate(picks):
        image, written = rows[i]
        x[k, 0, :, : image.shape[1]] = image
        frames.append(image.shape[1] // STRIDE)
        targets += [ALPHABET.index(c) + 1 for c in written]
        lengths.append(len(written))
    x = (x / 255 - MEAN) / STD
    return (torch.from_numpy(x), torch.tensor(targets), torch.tensor(frames),
            torch.tensor(lengths))  # fmt: skip


def batches(widths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of rows of similar width (sorted within shuffled blocks of 50 batches), shuffled."""
    order = rng.permutation(len(widths))
    out = []
    for start in range(0, len(order), BATCH * 50):
        block = order[start : start + BATCH * 50]
        block = block[np.argsort(widths[block], kind="stable")]
        out += [block[i : i + BATCH] for i in range(0, len(block) - BATCH + 1, BATCH)]
    return [out[i] for i in rng.permutation(len(out))]


def judged(reader: LineReader, logits: list, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's confidence (`sequence.reading`) and whether its string is exactly right; a row
    whose ink was not found (logits None) is wrong at confidence 0."""
    conf, right = [], []
    for z, written in zip(logits, texts, strict=True):
        read = reader.decode(z, top=ALTERNATIVES) if z is not None else []
        text, sure, _ = reading(read)  # nothing read (or no ink found): wrong, at confidence 0
        conf.append(sure)
        right.append(text == written)
    return np.clip(conf, 1e-6, 1 - 1e-6), np.array(right)


def fit_temperature(reader: LineReader, logits: list, texts: list[str]) -> float:
    """The temperature (set on `reader` and returned) minimising the log loss of 'the whole row
    is right' with the row's confidence as its probability."""
    best = (np.inf, 1.0)
    for temperature in np.exp(np.linspace(np.log(0.3), np.log(3.0), 47)):
        reader.temperature = float(temperature)
        conf, right = judged(reader, logits, texts)
        loss = -np.mean(np.where(right, np.log(conf), np.log(1 - conf)))
        best = min(best, (float(loss), float(temperature)))
    reader.temperature = best[1]
    return best[1]


def figures(reader: LineReader, logits: list, texts: list[str]) -> dict:
    """Rows read exactly, and the calibration error of their confidence (15 bins)."""
    conf, right = judged(reader, logits, texts)
    ece = reliability_of(conf, right)["ece"]
    return {"rows": len(texts), "exact": float(right.mean()), "ece": float(ece)}


def paper_logits(reader: LineReader, items: list) -> list:
    """The network's scores for photos of rows, prepared as `Predictor.read_number` does."""
    out = []
    for item in items:
        row = row_ink(item.image, "row")
        out.append(None if row is None else reader.logits(row.line()[0]))
    return out


def calibrate(reader: LineReader, digits: Split, synthetic: list, limit: int | None) -> dict:
    """Fit the reader's temperature on PAPER_ROWS rows (100 with a `limit`) written on paper and
    photographed (`ink.paper.mixed`: numbers, boxes, ruled lines, amounts and dates, as the
    reading benchmark makes them) from the held-out `digits`; its record: the temperature and
    the validation figures on those rows and on the `synthetic` rows (the training generator's,
    held out)."""
    rows = PAPER_ROWS if limit is None else 100
    items = paper.mixed(digits, rows, seed=PAPER_SEED)
    logits, texts = paper_logits(reader, items), [item.text for item in items]
    temperature = fit_temperature(reader, logits, texts)
    made = [reader.logits(image) for image, _ in synthetic]
    return {
        "temperature": temperature,
        "calibrated_on": f"{rows} rows on paper (ink.paper.mixed, seed {PAPER_SEED}) from the "
        "validation digits",
        "validation": figures(reader, logits, texts),
        "validation_synthetic": figures(reader, made, [written for _, written in synthetic]),
    }


def validation_rows(mnist, seed: int, limit: int | None) -> tuple[Split, list]:
    """The held-out digits (the built-in reader's validation split) and the synthetic rows made
    from them."""
    labels = mnist.train.labels
    _, val_idx = stratified_split(labels, 0.1, 0)
    if limit is not None:
        val_idx = val_idx[: max(limit // 9, 100)]
    digits = Split(mnist.train.images[val_idx], labels[val_idx])
    count = VALIDATION_ROWS if limit is None else min(VALIDATION_ROWS, 2 * limit + 1)
    workers = max(1, min(os.cpu_count() or 1, 8))
    return digits, make_rows(digits.images, digits.labels, count, seed + 1, workers)


def recalibrate(folder, mnist, limit: int | None = None) -> dict:
    """Fit the temperature of the line reader in `folder` again (`calibrate`, with the rows its
    training held out) and rewrite its lines.json; the new record."""
    reader = LineReader.load(folder)
    config = reader.info.get("train_config", {})
    seed = config.get("seed", config.get("seeds", [0])[0])  # the seed its rows were made with
    digits, synthetic = validation_rows(mnist, seed, limit)
    info = reader.info | calibrate(reader, digits, synthetic, limit)
    atomic.write_json(Path(folder) / FILES[0], info)
    return info


def train_lines(
    out, mnist, epochs: int = EPOCHS, samples: int = SAMPLES, seed: int = 0,
    limit: int | None = None, on_event=None, overwrite: bool = False, members: int = MEMBERS,
) -> dict:  # fmt: skip
    """Train `members` line readers (seeds `seed`, `seed` + 1, ...) into out/members/seedS, then
    their ensemble into `out` (lines.json, lines.safetensors); its record. A member already
    trained there by the same recipe is kept, so an interrupted recipe goes on from it."""
    out = Path(out)
    if LineReader.present(out) and not overwrite:
        raise DigitlabError(f"{out}: holds a line reader already (--overwrite replaces it)")
    say = on_event or (lambda message: None)
    folders = []
    for s in range(seed, seed + members):
        folder = out / "members" / f"seed{s}"
        settings = {"epochs": epochs, "samples": samples, "seed": s, "limit": limit}
        if not overwrite and trained_as(folder, settings):
            say(f"member {len(folders) + 1}/{members} (seed {s}): trained already, kept")
        else:
            say(f"member {len(folders) + 1}/{members} (seed {s})")
            train_member(folder, mnist, **settings, on_event=on_event)
        folders.append(folder)
    return combine(out, folders, mnist, limit, on_event)


def trained_as(folder: Path, settings: dict) -> bool:
    """Whether `folder` holds a line reader trained by this recipe with these settings."""
    if not LineReader.present(folder):
        return False
    try:
        info = LineReader.load(folder).info
    except DigitlabError:
        return False
    config, limit = info.get("train_config", {}), settings["limit"]
    samples = settings["samples"] if limit is None else min(settings["samples"], 8 * limit)
    return (
        info.get("digitlab_version") == version.__version__
        and info.get("limit") == limit
        and config.get("flagged_ones") == FLAGGED_ONES
        and (config.get("epochs"), config.get("samples"), config.get("seed"))
        == (settings["epochs"], samples, settings["seed"])
    )


def combine(out, folders: list, mnist, limit: int | None = None, on_event=None) -> dict:
    """The ensemble of the line readers in `folders`, written to `out`: their weights in one
    file, their log-probabilities averaged (`LineReader`), a temperature fitted on the mean
    as for one reader (`calibrate`); its record."""
    started = time.perf_counter()
    readers = [LineReader.load(folder) for folder in folders]
    if any(r.members for r in readers):
        raise DigitlabError("an ensemble's members are single line readers, not ensembles")
    arrays = {f"m{i}.{k}": v for i, r in enumerate(readers) for k, v in r.arrays.items()}
    payload = save_arrays(arrays)
    first = readers[0].info
    config = {k: v for k, v in first["train_config"].items() if k != "seed"}
    info = {k: first[k] for k in ("format", "kind", "digitlab_version", "alphabet", "recipe",
                                  "data", "limit") if k in first}  # fmt: skip
    info |= {
        "train_config": config | {"seeds": [r.info["train_config"]["seed"] for r in readers]},
        "members": [
            {"seed": r.info["train_config"]["seed"], "temperature": r.temperature,
             "weights_sha256": r.info["weights_sha256"], "validation": r.info["validation"]}
            for r in readers
        ],
        "temperature": 1.0,
        "weights_sha256": hashlib.sha256(payload).hexdigest(),
    }  # fmt: skip
    reader = LineReader(info, arrays, Path(out))
    digits, held = validation_rows(mnist, info["train_config"]["seeds"][0], limit)
    info |= calibrate(reader, digits, held, limit)
    own = time.perf_counter() - started
    info["seconds"] = round(sum(r.info.get("seconds", 0.0) for r in readers) + own, 1)
    atomic.write_bytes(Path(out) / FILES[1], payload)
    atomic.write_json(Path(out) / FILES[0], info)  # last: a folder with lines.json is complete
    exact, temperature = info["validation"]["exact"], info["temperature"]
    say = on_event or (lambda message: None)
    say(f"{len(readers)} members together: validation rows on paper read exactly: {exact:.2%} "
        f"(temperature {temperature:.2f})")  # fmt: skip
    return info


def train_member(
    out, mnist, epochs: int = EPOCHS, samples: int = SAMPLES, seed: int = 0,
    limit: int | None = None, on_event=None,
) -> dict:  # fmt: skip
    """Train one line reader into folder `out` (lines.json, lines.safetensors); its record."""
    import torch

    out = Path(out)
    say = on_event or (lambda message: None)
    started = time.perf_counter()
    labels = mnist.train.labels
    train_idx, _ = stratified_split(labels, 0.1, 0)  # the built-in reader's split
    if limit is not None:
        train_idx = train_idx[:limit]
        samples = min(samples, 8 * limit)
    images = mnist.train.images
    workers = max(1, min(os.cpu_count() or 1, 8))
    say(f"making {samples:,} rows from {len(train_idx):,} training digits")
    rows = make_rows(images[train_idx], labels[train_idx], samples, seed, workers)
    digits, held = validation_rows(mnist, seed, limit)
    torch.manual_seed(seed)
    net = build_torch(ALPHABET)
    steps_per_epoch = max(1, len(rows) // BATCH)
    optimiser = torch.optim.AdamW(net.parameters(), LR, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, LR, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    widths = np.array([image.shape[1] for image, _ in rows])
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        net.train()
        total, count = 0.0, 0
        for picks in batches(widths, rng)[:steps_per_epoch]:
            x, targets, frames, lengths = batch(rows, picks)
            log_p = net(x).log_softmax(1).permute(2, 0, 1)  # (frames, batch, classes)
            loss = loss_fn(log_p, targets, frames, lengths)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total, count = total + loss.item(), count + 1
        say(f"epoch {epoch}/{epochs}: CTC loss {total / max(count, 1):.4f}")
    net.eval()
    arrays = fold(net)
    payload = save_arrays(arrays)
    info = {
        "format": 1,
        "kind": "line-reader",
        "digitlab_version": version.__version__,
        "alphabet": ALPHABET,
        "recipe": "reader-lines",
        "data": {"dataset": "mnist", "digits": "train, less the reader's 10% validation split",
                 "train_digits": len(train_idx), "validation_digits": len(digits)},
        "train_config": {"samples": samples, "epochs": epochs, "batch_size": BATCH, "lr": LR,
                         "optimizer": "adamw", "schedule": "onecycle", "seed": seed,
                         "flagged_ones": FLAGGED_ONES},
        "limit": limit,
        "temperature": 1.0,
        "weights_sha256": hashlib.sha256(payload).hexdigest(),
    }  # fmt: skip
    reader = LineReader(info, arrays, out)
    info |= calibrate(reader, digits, held, limit)
    info["seconds"] = round(time.perf_counter() - started, 1)
    atomic.write_bytes(out / FILES[1], payload)
    atomic.write_json(out / FILES[0], info)  # last: a folder with lines.json is complete
    exact, temperature = info["validation"]["exact"], info["temperature"]
    say(f"validation rows on paper read exactly: {exact:.2%} (temperature {temperature:.2f})")
    return info

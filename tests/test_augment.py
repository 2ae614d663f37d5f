"""Augmentation: exact where it can be, and the two engines agree in distribution."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.augment import AUGMENTATIONS, Augmentation, augment, warp
from digitlab.spec import mlp
from digitlab.train import TrainConfig, Trainer


def digits(mnist, n=64):
    return mnist.train.images[:n].astype(np.float32) / 255


def test_no_transform_is_the_identity(mnist):
    x = digits(mnist)
    assert augment(x, np.random.default_rng(0), AUGMENTATIONS["none"]) is x
    y = augment(x, np.random.default_rng(0), Augmentation(shift=1e-9))
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_whole_pixel_shifts_move_the_digit_exactly(mnist):
    x = digits(mnist, 8)
    rows, cols = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    # sample from 2 rows up and 3 columns left: the digit moves down 2, right 3
    moved = warp(x, np.broadcast_to(rows - 2.0, x.shape), np.broadcast_to(cols - 3.0, x.shape))
    np.testing.assert_array_equal(moved[:, 2:, 3:], x[:, :-2, :-3])
    assert (moved[:, :2] == 0).all() and (moved[:, :, :3] == 0).all()


@pytest.mark.parametrize("name", ["shift", "affine", "elastic", "real"])
def test_augmented_digits_stay_digits(mnist, name):
    x = digits(mnist)
    y = augment(x, np.random.default_rng(1), AUGMENTATIONS[name])
    assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1 + 1e-6
    assert not np.allclose(y, x)
    ink = x.sum(axis=(1, 2))  # transforms move ink around, they do not create or erase much
    limit = 0.35 if name == "real" else 0.2  # ... except "real" changes the pen on 40% of them
    assert np.median(np.abs(y.sum(axis=(1, 2)) - ink) / ink) < limit


@pytest.mark.parametrize("name", ["affine", "elastic", "real"])
def test_torch_on_device_augmentation_matches_numpy_in_distribution(mnist, name):
    torch = pytest.importorskip("torch")
    from digitlab.engines import torch_engine

    x = digits(mnist, 512)
    ours = augment(x, np.random.default_rng(2), AUGMENTATIONS[name])
    gen = torch.Generator().manual_seed(2)
    theirs = torch_engine.augment(torch.from_numpy(x)[:, None], gen, AUGMENTATIONS[name])[
        :, 0
    ].numpy()

    def centre_spread(a):  # how far ink sits from the image centre, on average
        rows = np.arange(28)[None, :, None]
        mass = a.sum(axis=(1, 2))
        r = (a * rows).sum(axis=(1, 2)) / mass
        return float(np.std(r))

    assert abs(ours.mean() - theirs.mean()) < 0.1 * x.mean()
    assert centre_spread(ours) == pytest.approx(centre_spread(theirs), rel=0.25)
    assert abs(np.abs(ours - x).mean() - np.abs(theirs - x).mean()) < 0.25 * np.abs(ours - x).mean()


def test_early_stopping_stops_when_validation_stops_improving(mnist):
    from digitlab.engines import numpy_engine

    model = numpy_engine.build(mlp([32]), seed=0)
    # a constant, far too small learning rate: validation loss barely moves, so patience runs out
    config = TrainConfig(
        epochs=30, lr=1e-7, schedule="constant", momentum=0.0, patience=2, val_split=0.2
    )
    trainer = Trainer(model, mnist.train.images[:1000], mnist.train.labels[:1000], config)
    trainer.best_val_loss = 0.0  # pretend an earlier epoch was unbeatable
    history = trainer.run()
    assert trainer.stopped_early and len(history.rows) == 2


def test_each_real_world_fault_does_what_it_says(mnist):
    """The reader's "real" augmentation, one fault at a time on every image (share 1)."""
    from digitlab.augment import degrade

    x = digits(mnist, 128)

    def alone(**share):
        return degrade(x.copy(), np.random.default_rng(4), Augmentation(**share))

    area = (x > 0.5).sum(axis=(1, 2)).mean()
    pen = alone(pen=1.0)  # half thicker, half thinner
    changed = (pen > 0.5).sum(axis=(1, 2))
    assert changed.max() > 1.5 * area and changed.min() < 0.9 * area
    blurred = alone(blur=1.0)
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.8 * np.abs(np.diff(x, axis=2)).mean()
    faint = alone(faint=1.0)
    assert faint.max(axis=(1, 2)).mean() < 0.9 and faint.max() <= 1.0
    noisy = alone(noise=1.0)
    background = x == 0
    assert noisy[background].std() > 0.005 and noisy.min() >= 0 and noisy.max() <= 1
    for out in (pen, blurred, faint, noisy):
        assert out.dtype == np.float32 and out.shape == x.shape


def test_a_share_of_the_ones_get_a_flag_and_nothing_else_changes(mnist):
    """aug.flag draws a stroke from the top of a 1 down to its left (MNIST's writers drew a bare
    bar; print and European hands add a flag, which the reader took for a 7)."""
    from digitlab.ink.flags import flag_ones

    x, labels = digits(mnist, 600), mnist.train.labels[:600]
    ones = labels == 1
    y = flag_ones(x, labels, np.random.default_rng(5), 1.0)
    np.testing.assert_array_equal(y[~ones], x[~ones])
    added = y[ones] - x[ones]
    assert (added >= 0).all() and (added.sum(axis=(1, 2)) > 3).all()  # every 1, some ink
    cols = np.arange(28)
    for before, gained in zip(x[ones], added, strict=True):  # the flag: down-left of the top
        rows = np.flatnonzero((before > 0.5).any(axis=1))
        top = (before[rows[0]] * cols).sum() / before[rows[0]].sum()
        upper = gained[: (rows[0] + rows[-1]) // 2]
        assert upper.sum() > 1 and (upper * cols).sum() / upper.sum() < top
    half = flag_ones(x, labels, np.random.default_rng(5), 0.5)
    changed = (half != x).any(axis=(1, 2))
    assert 0.3 < changed[ones].mean() < 0.7 and not changed[~ones].any()
    unlabelled = augment(x, np.random.default_rng(5), Augmentation(flag=1.0))
    np.testing.assert_allclose(unlabelled, x, atol=1e-6)  # no labels, no flags


def test_torch_flags_the_ones_as_numpy_does(mnist):
    torch = pytest.importorskip("torch")
    from digitlab.engines import torch_augment
    from digitlab.ink.flags import flag_ones

    x, labels = digits(mnist, 3000), mnist.train.labels[:3000]
    ours = flag_ones(x, labels, np.random.default_rng(6), 1.0) - x
    gen = torch.Generator().manual_seed(6)
    theirs = (
        torch_augment.flag_ones(
            torch.from_numpy(x)[:, None], torch.from_numpy(labels.astype(np.int64)), gen, 1.0
        )[:, 0].numpy()
        - x
    )
    ones = labels == 1
    assert not theirs[~ones].any()
    assert theirs[ones].sum() == pytest.approx(ours[ones].sum(), rel=0.15)


def test_labels_that_do_not_match_the_images_are_refused():
    """Labels shaped (B, 1) would broadcast against the batch and flag the wrong images."""
    torch = pytest.importorskip("torch")
    from digitlab.engines import torch_augment
    from digitlab.ink.flags import flag_ones

    x = np.zeros((4, 28, 28), np.float32)
    x[:, 4:24, 13:16] = 1
    ones = np.array([[1], [0], [1], [0]])  # (B, 1): read as B labels
    y = flag_ones(x, ones, np.random.default_rng(0), 1.0)
    assert (y[[0, 2]] != x[[0, 2]]).any() and (y[[1, 3]] == x[[1, 3]]).all()
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        flag_ones(x, np.ones(3, int), np.random.default_rng(0), 1.0)
    gen = torch.Generator().manual_seed(0)
    t = torch_augment.flag_ones(torch.from_numpy(x)[:, None], torch.from_numpy(ones), gen, 1.0)
    assert (t[[1, 3], 0].numpy() == x[[1, 3]]).all() and (t[[0, 2], 0].numpy() != x[[0, 2]]).any()
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        torch_augment.flag_ones(torch.from_numpy(x)[:, None], torch.ones(3), gen, 1.0)

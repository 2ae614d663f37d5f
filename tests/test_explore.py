"""Exploration statistics on small hand-made arrays, then the whole job on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitlab import explore as ex
from digitlab.errors import DigitlabError


def blank(n=1):
    return np.zeros((n, 28, 28), np.uint8)


def test_centre_of_mass_box_and_thickness_of_a_known_bar():
    images = blank()
    images[0, 10:20, 6:9] = 255  # a vertical bar: rows 10-19, columns 6-8 (3 pixels wide)
    s = ex.ink_stats(images)
    assert s["centre_row"][0] == pytest.approx(14.5) and s["centre_col"][0] == pytest.approx(7.0)
    assert (s["height"][0], s["width"][0]) == (10, 3)
    assert s["ink"][0] == pytest.approx(30.0)
    assert s["thickness"][0] == pytest.approx(2 * 30 / 22)  # area 30, perimeter pixels 22
    assert s["slant"][0] == pytest.approx(0.0, abs=1e-6)


def test_slant_sign_of_a_line_leaning_right():
    images = blank(2)
    for row in range(5, 23):  # one pixel right for every two rows up: leans right
        images[0, row, 14 + (22 - row) // 2] = 255
        images[1, row, 14 - (22 - row) // 2] = 255  # the mirror image leans left
    s = ex.ink_stats(images)
    assert s["slant"][0] == pytest.approx(0.5, abs=0.05) and s["slant"][1] == pytest.approx(
        -0.5, abs=0.05
    )


def test_pixel_stats_and_class_balance():
    images = blank(4)
    images[:, 0, 0] = [0, 0, 255, 255]  # pixel (0,0) is not blank in every image
    images[1, 5, 5] = 51
    p = ex.pixel_stats(images)
    assert p["always_blank"] == 28 * 28 - 2 and p["histogram"][255] == 2 and p["histogram"][51] == 1
    assert p["blank_share"] == pytest.approx(1 - 3 / (4 * 784))
    assert p["mean"] == pytest.approx((2 * 255 + 51) / 255 / (4 * 784))
    b = ex.class_balance(np.array([0, 0, 0, 1, 2, 2]), np.array([0, 1]), ["a", "b", "c"])
    assert b["largest_imbalance"] == {"most": "a", "least": "b", "ratio": 3.0}
    assert b["test"] == [1, 1, 0]
    empty = ex.class_balance(np.array([0, 0, 2]), None, ["a", "b", "c"])  # no "b" at all
    assert empty["largest_imbalance"] == {"most": "a", "least": "b", "ratio": None}


def test_too_few_images_to_explore_is_one_line(tmp_path):
    from digitlab.data import Dataset, Split
    from digitlab.errors import DataError
    from digitlab.jobs import explore_dataset

    few = Split(blank(5), np.arange(5, dtype=np.uint8))
    none = Split(blank(0), np.zeros(0, np.uint8))
    ds = Dataset("few", list("0123456789"), few, none, source="test", verified=False)
    with pytest.raises(DataError, match="needs more than 10 training images, it has 5"):
        explore_dataset(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_planted_exact_and_near_duplicates_are_found():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    train[17] = train[250]  # an exact copy
    train[40] = train[120]
    train[40, 3, 3] ^= 40  # a near copy: one pixel changed a little
    test = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    test[7] = train[99]
    groups = ex.exact_duplicates(train)
    assert [17, 250] in groups and len(groups) == 1
    assert ex.exact_duplicates(test, train) == [[7, 99]]
    fit = ex.pca(train.astype(np.float32) / 255)
    features = ex.project(train.astype(np.float32) / 255, fit, 30)
    dist, idx = ex.nearest_neighbours(features, features, 3, skip_self=True)
    near = ex.near_duplicates(dist, idx, train)
    assert [(p["i"], p["j"]) for p in near] == [(40, 120)]  # the exact copy is not "near"
    assert near[0]["distance"] == pytest.approx(
        abs(int(train[40, 3, 3]) - int(train[120, 3, 3])) / 255
    )


def test_a_planted_mislabelled_image_is_a_label_suspect(mnist):
    images, labels = mnist.train.images[:3000], mnist.train.labels[:3000].copy()
    planted = [i for i in np.flatnonzero(labels == 0)[:3]]  # clear zeros, relabelled as 6
    labels[planted] = 6
    fit = ex.pca(images.astype(np.float32) / 255)
    features = ex.project(images.astype(np.float32) / 255, fit, 30)
    _, idx = ex.nearest_neighbours(features, features, 10, skip_self=True)
    suspects = {s["index"]: s for s in ex.label_suspects(idx, labels)}
    for i in planted:
        assert i in suspects and suspects[i]["neighbours_say"] == 0 and suspects[i]["label"] == 6
    assert len(suspects) < 100  # a few dozen at most: the check is selective


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(500, 8)).astype(np.float32)
    dist, idx = ex.nearest_neighbours(points, points, 4, skip_self=True, block=128)
    full = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=1e-4, atol=1e-4)


def test_explore_leaves_a_run_and_other_files_alone(mnist, tmp_path):
    """An --out holding a run or someone's report.html had them replaced by the exploration."""
    from digitlab.jobs.explore import explore_dataset

    (tmp_path / "run" / "model.json").parent.mkdir()
    (tmp_path / "run" / "model.json").write_text("{}")
    (tmp_path / "mine" / "report.html").parent.mkdir()
    (tmp_path / "mine" / "report.html").write_text("my report")
    for out, why in [("run", "is a run; choose another folder"), ("mine", "not an exploration")]:
        with pytest.raises(DigitlabError, match=why):
            explore_dataset(mnist, tmp_path / out, sample=300)
    assert (tmp_path / "mine" / "report.html").read_text() == "my report"


def test_explore_job_on_imported_data(mnist, tmp_path):
    from digitlab.jobs.explore import explore_dataset

    np.savez(
        tmp_path / "small.npz",
        x_train=mnist.train.images[:3000],
        y_train=mnist.train.labels[:3000],
        x_test=mnist.test.images[:500],
        y_test=mnist.test.labels[:500],
    )
    summary = explore_dataset(str(tmp_path / "small.npz"), tmp_path / "out", sample=300)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["sizes"] == {"train": 3000, "test": 500} and saved["embedding_sample"] == 300
    assert saved["class_balance"]["train"] == np.bincount(mnist.train.labels[:3000]).tolist()
    assert summary["train_vs_test"]["largest"] in ex.INK_FIELDS
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 10 and "https://" not in html
    assert len(list((tmp_path / "out" / "figures").glob("*.png"))) == 10

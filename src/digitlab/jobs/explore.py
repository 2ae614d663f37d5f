"""The explore job: statistics of a dataset, its figures, summary.json and one report.html.

    >>> summary = explore_dataset("mnist", "runs/explore-mnist", sample=2000)

One PCA (fitted on a stratified sample) feeds everything that needs neighbours: one k-NN
search over the training images gives both near-duplicates and label suspects; a second,
test against train, finds duplicates across the splits. t-SNE runs on a stratified sample.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from digitlab import explore as ex
from digitlab import explore_plots, plots, report
from digitlab.atomic import json_safe, write_bytes, write_text
from digitlab.data import Dataset, open_dataset
from digitlab.errors import DataError, DigitlabError
from digitlab.machine import describe

PCA_SAMPLE = 10_000  # images the PCA is fitted on (stratified)
SEARCH_DIMS = 30  # PCA dimensions used for neighbour searches
NEIGHBOURS = 10  # of each training image: its near duplicates and label suspects


def explore_dataset(
    data: Dataset | str,
    out: str | Path,
    sample: int = 2000,
    on_event=None,
    overwrite: bool = False,
) -> dict:
    """Compute, draw and write the exploration of a dataset (a Dataset, or a name or path to
    open); returns summary.json's content. An earlier exploration in `out` is replaced; a
    folder holding anything else only with `overwrite` (a run's report was replaced)."""
    from sklearn.manifold import TSNE

    say = on_event or (lambda message: None)
    started = time.perf_counter()
    ds = data if isinstance(data, Dataset) else open_dataset(data, on_event=on_event)
    name_or_path = ds.ref or ds.name
    classes, k = ds.classes, len(ds.classes)
    train, test = ds.train, ds.test
    if train.labels is None or not len(train):
        raise DataError(f"{name_or_path}: exploring needs labeled training images")
    if len(train) <= NEIGHBOURS:  # each image's 10 nearest, and itself
        raise DataError(
            f"{name_or_path}: exploring needs more than {NEIGHBOURS} training images, it has "
            f"{len(train)}"
        )
    has_test = test.labels is not None and len(test) > 0
    out = Path(out)
    check_out(out, overwrite)  # before the statistics, PCA and t-SNE
    figures: dict[str, bytes] = {}

    def draw(name: str, fig) -> None:
        figures[name] = plots.figure_bytes(fig)
        write_bytes(out / "figures" / f"{name}.png", figures[name])

    say("statistics")
    balance = ex.class_balance(train.labels, test.labels if has_test else None, classes)
    means, stds = ex.class_means(train.images, train.labels, k)
    similarity = ex.cosine_similarity(means)
    pixels = ex.pixel_stats(train.images)
    ink = ex.ink_stats(train.images)
    ink_test = ex.ink_stats(test.images) if has_test else None
    medians = ex.per_class_medians(ink, train.labels, classes)

    say("PCA and neighbours")
    fit_idx = ex.stratified_sample(train.labels, PCA_SAMPLE)
    fit = ex.pca(train.images[fit_idx].astype(np.float32) / 255)
    features = ex.project(train.images.astype(np.float32) / 255, fit, SEARCH_DIMS)
    dist, idx = ex.nearest_neighbours(features, features, NEIGHBOURS, skip_self=True)
    near = ex.near_duplicates(dist, idx, train.images)
    suspects = ex.label_suspects(idx, train.labels)
    exact = ex.exact_duplicates(train.images)
    exact_cross, near_cross = [], []
    if len(test):
        test_features = ex.project(test.images.astype(np.float32) / 255, fit, SEARCH_DIMS)
        cross_dist, cross_idx = ex.nearest_neighbours(test_features, features, 1, skip_self=False)
        near_cross = ex.near_duplicates(cross_dist, cross_idx, test.images, base=train.images)
        exact_cross = ex.exact_duplicates(test.images, train.images)  # [test index, train index]

    say(f"t-SNE of {min(sample, len(train))} images")
    emb_idx = ex.stratified_sample(train.labels, sample, seed=1)
    emb_features = ex.project(train.images[emb_idx].astype(np.float32) / 255, fit, 50)
    tsne = TSNE(
        n_components=2, init="pca", random_state=0, perplexity=min(30, max(5, len(emb_idx) // 4))
    )
    xy_tsne = tsne.fit_transform(emb_features)
    shift = ex.split_shift(ink, ink_test) if has_test else None

    say("figures")
    draw("class_balance", explore_plots.class_balance_bars(balance, classes))
    grid_idx = [i for c in range(k) for i in np.flatnonzero(train.labels == c)[:8]]
    draw(
        "samples",
        plots.sample_grid(train.images[grid_idx], train.labels[grid_idx], classes, columns=8),
    )
    draw("class_means", explore_plots.class_mean_images(means, stds, classes))
    draw("similarity", explore_plots.similarity_heatmap(similarity, classes))
    draw("pixels", explore_plots.pixel_figure(pixels))
    draw("ink", explore_plots.ink_distributions(ink, train.labels, classes, ex.INK_FIELDS))
    draw("pca", explore_plots.pca_variance(fit["explained"], fit["for_90"], fit["for_95"]))
    draw(
        "embedding",
        explore_plots.embedding_scatter(
            {"PCA (2 components)": emb_features[:, :2], "t-SNE": xy_tsne},
            train.labels[emb_idx],
            classes,
        ),
    )
    shown = near[:8]
    draw(
        "near_duplicates",
        explore_plots.image_pairs(
            train.images[[p["i"] for p in shown]],
            train.images[[p["j"] for p in shown]],
            [f"train {p['i']} ~ {p['j']} ({p['distance']:.2f})" for p in shown],
            "closest pairs within train (pixel distance, 0..1 scale)",
        ),
    )
    shown_s = suspects[:24]
    draw(
        "label_suspects",
        plots.sample_grid(
            train.images[[s["index"] for s in shown_s]] if shown_s else train.images[:0],
            None,
            classes,
            columns=8,
            captions=[
                f"#{x['index']}: {classes[x['label']]}→{classes[x['neighbours_say']]}?"
                for x in shown_s
            ],
            title="label suspects (#index: label → what 8 or more of 10 neighbours say)",
        ),
    )

    seconds = time.perf_counter() - started
    summary = {
        "dataset": ds.name,
        "source": ds.source,
        "classes": classes,
        "sizes": {"train": len(train), "test": len(test)},
        "class_balance": balance,
        "similar_class_means": ex.most_similar_pairs(similarity, classes),
        "pixels": {key: pixels[key] for key in ("blank_share", "always_blank", "mean", "std")},
        "ink_per_class": medians,
        "pca": {"for_90": fit["for_90"], "for_95": fit["for_95"], "fitted_on": len(fit_idx)},
        "embedding_sample": len(emb_idx),
        "duplicates": {
            "exact_within_train": exact,
            "exact_train_test": [[t, r] for t, r in exact_cross],
            "near_within_train": near[:200],
            "near_test_train": near_cross[:200],
            "near_within_train_count": len(near),
            "near_test_train_count": len(near_cross),
        },
        "label_suspects": suspects[:200],
        "label_suspects_count": len(suspects),
        "train_vs_test": shift,
        "seconds": seconds,
    }
    write_text(out / "summary.json", json.dumps(json_safe(summary), indent=2) + "\n")
    write_text(out / "report.html", _report(summary, figures, name_or_path, out, sample))
    return summary


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, a run, or a folder of other files than an exploration's
    (unless `overwrite`): writing there replaced their report.html and mixed figures in."""
    if out.exists() and not out.is_dir():
        raise DigitlabError(f"--out {out}: exists and is not a folder")
    if (out / "model.json").exists():
        raise DigitlabError(f"--out {out}: is a run; choose another folder for the exploration")
    theirs = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if theirs and not (out / "summary.json").is_file() and not overwrite:
        raise DigitlabError(
            f"--out {out}: holds files that are not an exploration ({', '.join(theirs[:3])}"
            f"{', ...' if len(theirs) > 3 else ''}); choose an empty or new --out, or pass "
            "--overwrite"
        )


def _report(s: dict, figures: dict[str, bytes], ref: str, out: Path, sample: int) -> str:
    sec = report.section
    b = s["class_balance"]
    imb = b["largest_imbalance"]
    classes = s["classes"]
    shift = s["train_vs_test"]
    shift_text = (
        f"The largest difference between train and test is in {shift['largest'].replace('_', ' ')} "
        f"(Kolmogorov-Smirnov statistic {shift['largest_ks']:.3f}; below about 0.05 the two splits "
        "look alike)."
        if shift
        else "There is no labeled test split to compare with."
    )
    d = s["duplicates"]
    suspects = ", ".join(
        f"#{x['index']} {classes[x['label']]}→{classes[x['neighbours_say']]}"
        for x in s["label_suspects"][:12]
    )
    ink_rows = [
        [m["class"], *(f"{m[f]:.2f}" if m[f] is not None else "-" for f in ex.INK_FIELDS)]
        for m in s["ink_per_class"]
    ]
    machine = describe()
    return report.render(
        title=f"Exploring {s['dataset']}",
        subtitle=f"{s['sizes']['train']:,} training and {s['sizes']['test']:,} test images, "
        f"{len(classes)} classes (source: {s['source']}); {s['seconds']:.0f} s",
        headline=[
            ("train images", f"{s['sizes']['train']:,}"),
            ("PCA components for 95%", str(s["pca"]["for_95"])),
            ("near-duplicate pairs", str(d["near_within_train_count"])),
            ("label suspects", str(s["label_suspects_count"])),
        ],
        sections=[
            sec(
                "Class balance",
                text=f"Most frequent class in train: {imb['most']}; least: {imb['least']} "
                + (f"({imb['ratio']:.2f}× apart)." if imb["ratio"] else "(it has none)."),
                table=(
                    ["class", "train", "train %", "test", "test %"],
                    [
                        [
                            c,
                            b["train"][i],
                            f"{b['train_share'][i]:.1%}",
                            b["test"][i],
                            f"{b['test_share'][i]:.1%}",
                        ]
                        for i, c in enumerate(classes)
                    ],
                ),
                figures=[
                    ("class balance", figures["class_balance"]),
                    ("eight training images per class", figures["samples"]),
                ],
            ),
            sec(
                "What each class looks like on average",
                text="Most alike on average: "
                + ", ".join(
                    f"{p['a']} and {p['b']} ({p['similarity']:.2f})"
                    for p in s["similar_class_means"][:3]
                )
                + ".",
                figures=[
                    ("class means and standard deviations", figures["class_means"]),
                    ("similarity of the class means", figures["similarity"]),
                ],
            ),
            sec(
                "Pixels",
                text=f"{s['pixels']['blank_share']:.1%} of pixels are background; "
                f"{s['pixels']['always_blank']} pixels are blank in every training image. "
                f"Normalisation constants (pixels / 255): mean "
                f"{s['pixels']['mean']:.4f}, std {s['pixels']['std']:.4f}.",
                figures=[("pixel statistics", figures["pixels"])],
            ),
            sec(
                "Ink per class",
                text="Medians per class. Slant is the horizontal shift of the ink per row "
                "(positive leans right); thickness is the stroke width in pixels.",
                table=(["class", *[f.replace("_", " ") for f in ex.INK_FIELDS]], ink_rows),
                figures=[("distributions of the ink statistics", figures["ink"])],
            ),
            sec(
                "Structure",
                text=f"PCA (fitted on {s['pca']['fitted_on']:,} stratified images): "
                f"{s['pca']['for_90']} components keep 90% of the variance, "
                f"{s['pca']['for_95']} keep 95%. "
                f"The 2-D views show a stratified sample of {s['embedding_sample']:,} images.",
                figures=[
                    ("explained variance", figures["pca"]),
                    ("2-D PCA and t-SNE", figures["embedding"]),
                ],
            ),
            sec(
                "Quality: duplicates and label suspects",
                text=f"Exact duplicates: {len(d['exact_within_train'])} groups within train, "
                f"{len(d['exact_train_test'])} between train and test. "
                "Near duplicates (pixel distance ≤ 1.0 "
                f"on the 0..1 scale): {d['near_within_train_count']} pairs within train, "
                f"{d['near_test_train_count']} between test and train. "
                "Label suspects (at least 8 of 10 "
                "nearest neighbours carry one other label): "
                f"{s['label_suspects_count']}, for example "
                f"{suspects or 'none'}.",
                figures=[
                    ("closest pairs within train", figures["near_duplicates"]),
                    ("label suspects", figures["label_suspects"]),
                ],
            ),
            sec("Train vs test", text=shift_text),
        ],
        provenance=[
            ("explore again", f"digitlab explore {ref} --out {out} --sample {sample}"),
            ("machine", f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}"),
            ("software", f"Python {machine['python']}, NumPy {machine['numpy']}"),
        ],
    )

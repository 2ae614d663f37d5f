"""How the built-in reader's recipes are chosen (issue 17), on validation data only: fonts that
are in none of the reading benchmark's test sets, and the 10% of MNIST's training images the
reader held out; for its line reader, numbers in those fonts and rows of the held-out digits.

    python -m benchmarks reader_choice     # scores the shipped reader and runs/reader-*/

The validation fonts are Google Fonts from the npm registry (`@fontsource/*`, fetched once into
digitlab's data folder; a machine without npm or the registry gets a clear error): 28
handwriting-style families and 30 printed ones, none of them installed on this machine, where
the reading benchmark's printed and handwriting-style sets come from. Each digit is rendered and
photographed as `reading_sets.font_digits` does. Beside them: accuracy on the reader's held-out
MNIST digits, as they are and on paper (`calibration.paper` in model.json). No test image is
read here; the chosen run is then measured once by `python -m benchmarks reading`.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from benchmarks import reading_sets as sets
from benchmarks.common import RESULTS, save
from benchmarks.reading_peers import Digitlab
from digitlab import data, reader, runs

HANDWRITING = [
    "caveat",
    "indie-flower",
    "patrick-hand",
    "shadows-into-light",
    "kalam",
    "gloria-hallelujah",
    "architects-daughter",
    "homemade-apple",
    "reenie-beanie",
    "covered-by-your-grace",
    "rock-salt",
    "permanent-marker",
    "just-another-hand",
    "coming-soon",
    "schoolbell",
    "nothing-you-could-do",
    "sue-ellen-francisco",
    "zeyada",
    "gochi-hand",
    "handlee",
    "neucha",
    "short-stack",
    "annie-use-your-telescope",
    "walter-turncoat",
    "crafty-girls",
    "loved-by-the-king",
    "mansalva",
    "nanum-pen-script",
]
PRINTED = [
    "roboto",
    "inter",
    "lato",
    "open-sans",
    "montserrat",
    "source-sans-3",
    "noto-sans",
    "ibm-plex-sans",
    "fira-sans",
    "pt-sans",
    "work-sans",
    "ubuntu",
    "oswald",
    "raleway",
    "poppins",
    "nunito",
    "merriweather",
    "playfair-display",
    "roboto-slab",
    "roboto-mono",
    "source-code-pro",
    "pt-serif",
    "libre-baskerville",
    "crimson-text",
    "eb-garamond",
    "barlow",
    "karla",
    "rubik",
    "josefin-sans",
    "quicksand",
]


def fonts_folder() -> Path:
    """node_modules/@fontsource of the validation fonts, installed by npm on first use."""
    folder = data.home() / "validation-fonts"
    where = folder / "node_modules" / "@fontsource"
    if not all((where / name).is_dir() for name in HANDWRITING + PRINTED):
        if shutil.which("npm") is None:
            raise SystemExit("reader_choice: npm is needed to fetch the validation fonts")
        folder.mkdir(parents=True, exist_ok=True)
        packages = [f"@fontsource/{name}" for name in HANDWRITING + PRINTED]
        done = subprocess.run(
            ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", *packages],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise SystemExit(f"reader_choice: npm could not fetch the validation fonts: {said}")
    return where


def font_files(where: Path, names: list[str], weights: tuple[str, ...]) -> list[Path]:
    """Each family's Latin .woff in each weight; every one must be there."""
    files = [
        where / name / "files" / f"{name}-latin-{weight}-normal.woff"
        for name in names
        for weight in weights
    ]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise SystemExit(f"reader_choice: {len(missing)} validation fonts missing: {missing[:3]}")
    return files


def versions(where: Path) -> dict[str, str]:
    """The version npm installed of each validation font's package."""
    return {
        name: json.loads((where / name / "package.json").read_text())["version"]
        for name in HANDWRITING + PRINTED
    }


def validation_sets(where: Path) -> dict[str, list]:
    hand, printed = (
        font_files(where, HANDWRITING, ("400",)),
        font_files(where, PRINTED, ("400", "700")),
    )
    return {
        f"{len(HANDWRITING)} handwriting-style fonts": sets.font_digits(hand, 3, seed=107),
        f"{len(PRINTED)} printed fonts, 2 weights": sets.font_digits(printed, 1, seed=106),
    }


def font_numbers(where: Path, count_per_font: int = 4, seed: int = 200) -> list:
    """4-6 digit numbers in every validation font (400 weight), photographed as digits are."""
    rng = np.random.default_rng(seed)
    items = []
    for font in font_files(where, HANDWRITING, ("400",)) + font_files(where, PRINTED, ("400",)):
        for _ in range(count_per_font):
            written = "".join(rng.choice(list("0123456789"), int(rng.integers(4, 7))))
            drawing = sets.render(written, font, int(rng.integers(60, 120)), rng)
            h, w = drawing.shape
            items.append(sets.Item(sets.photograph(drawing, (w, h), rng), written))
    return items


def score_lines(folder, items: list) -> dict:
    """A line reader (with the shipped reader's digits) on `items`: exact, with and without a 1."""
    with_lines = Digitlab(str(folder), "reader", lines=folder)
    info = json.loads((Path(reader.run_folder(folder)) / "lines.json").read_text())
    right = [with_lines.number(i.image) == i.text for i in items]
    ones = np.array(["1" in i.text for i in items])
    return {
        "run": str(folder),
        "seed": info["train_config"].get("seed", info["train_config"].get("seeds")),
        "held-out rows on paper": info["validation"]["exact"],
        "font numbers": float(np.mean(right)),
        "with a 1": float(np.mean(np.array(right)[ones])),
        "without a 1": float(np.mean(np.array(right)[~ones])),
    }


def score(run, collections_: dict[str, list]) -> dict:
    info = runs.read_info(run)
    reader = Digitlab(str(run), run)
    row = {
        "run": str(run),
        "seed": info["train_config"].get("seed"),
        "held-out MNIST": info["training"]["final"]["val_acc"],
        "held-out MNIST on paper": info["calibration"]["paper"]["accuracy"],
    }
    for name, items in collections_.items():
        answers = reader.answers([i.image for i in items])
        wrong = [(i.text, a[0]) for i, a in zip(items, answers, strict=True) if a[0] != i.text]
        row[name] = 1 - len(wrong) / len(items)
        row[f"{name}: mistakes"] = collections.Counter(f"{t}→{g}" for t, g in wrong).most_common(3)
    return row


def earlier(key: str, scored: list[dict]) -> list[dict]:
    """Rows of the last pass whose runs are no longer on this machine (a fresh clone has no
    runs/): kept, marked with the day they were measured, so a choice stays on record."""
    path = RESULTS / "reader_choice.json"
    if not path.exists():
        return []
    last = json.loads(path.read_text())
    here = {row["run"] for row in scored}
    return [
        row | {"measured": row.get("measured", last["date"])}
        for row in last.get(key, [])
        if row["run"] not in here and row["run"] != "reader" and not Path(row["run"]).exists()
    ]


def with_earlier(key: str, scored: list[dict]) -> list[dict]:
    """`scored` (the shipped reader's row last) with `earlier` rows among the others, by run."""
    return sorted(earlier(key, scored) + scored[:-1], key=lambda r: r["run"]) + scored[-1:]


def run() -> dict:
    where = fonts_folder()
    collections_ = validation_sets(where)
    candidates = sorted(p for p in Path("runs").glob("reader-*") if (p / "model.json").exists())
    rows = with_earlier("rows", [score(c, collections_) for c in [*candidates, "reader"]])
    numbers = font_numbers(where)
    lines = sorted(p for p in Path("runs").glob("lines-*") if (p / "lines.json").exists())
    results = {
        "sets": {k: len(v) for k, v in collections_.items()},
        "rows": rows,
        "numbers": len(numbers),
        "font_versions": versions(where),
        "lines": with_earlier("lines", [score_lines(f, numbers) for f in [*lines, "reader"]]),
    }
    save("reader_choice", results, markdown(results))
    return results


def when(row: dict) -> str:
    """A carried-over row's mark: the day it was measured, its run no longer here."""
    return f", measured {row['measured']}" if "measured" in row else ""


def markdown(results: dict) -> str:
    names = list(results["sets"])
    head = [
        "run",
        "held-out MNIST",
        "held-out MNIST on paper",
        *names,
        "commonest mistakes (fonts)",
    ]
    sizes = ", ".join(f"{name}: {n} digits" for name, n in results["sets"].items())
    lines = [
        "## Choosing the built-in reader's recipe (issue 17, validation only)",
        "",
        "Fonts in none of the reading benchmark's sets (Google Fonts from npm, "
        "`benchmarks/reader_choice.py`), and the reader's held-out 10% of MNIST's training "
        "images; no test image is read (the npm packages' versions are in reader_choice.json). "
        f"{sizes}. "
        "`reader-flag-sN`: `digitlab train --recipe reader --seed N` (augmentation `real` gives "
        "40% of the 1s a flag); `reader-noflag-sN`: the same before 1s had flags "
        "(`real` with flag 0, the recipe of the reader shipped until 2026-12-01); `reader`: "
        'the reader shipped now. A row marked "measured" with a day is kept from an earlier '
        "pass whose run is no longer on the machine (the same seeded sets, the reader shipped "
        "then).",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 2) + "---|",
    ]
    for row in results["rows"]:
        mistakes = "; ".join(
            n.split(" ")[1] + ": " + ", ".join(f"{m} ×{k}" for m, k in row[f"{n}: mistakes"][:2])
            for n in names
        )
        cells = [f"`{row['run']}` (seed {row['seed']}){when(row)}"]
        cells += [f"{row[k]:.2%}" for k in head[1:-1]]
        lines.append("| " + " | ".join([*cells, mistakes]) + " |")
    lines += [
        "",
        f"Line readers, reading {results['numbers']} numbers of 4-6 digits in the validation "
        "fonts (4 in each, 400 weight) with the shipped reader's digits: `lines-flag-sN` is "
        "`digitlab train --recipe reader-lines --seed N` (40% of its rows' 1s have a flag), "
        "`lines-noflag-sN` the same before 1s had flags, `lines-e8-sN` with flags and "
        "`--epochs 8` (twice the default); `lines-ens` the two flagged seeds averaged (the "
        "recipe since 2026-12-01, shipped: `reader`), `lines-dist1` the same with rows drawn "
        "also from a warped copy of every training digit (rotation, scale, elastic; not "
        "taken); held-out rows on paper are its validation (lines.json), made from the "
        "reader's held-out MNIST digits.",
        "",
        "| line reader | held-out rows on paper | font numbers | with a 1 | without a 1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results["lines"]:
        seeds = row["seed"]
        seeds = (
            f"seeds {', '.join(map(str, seeds))}" if isinstance(seeds, list) else f"seed {seeds}"
        )
        cells = [f"`{row['run']}` ({seeds}){when(row)}"]
        figures = ("held-out rows on paper", "font numbers", "with a 1", "without a 1")
        cells += [f"{row[k]:.1%}" for k in figures]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

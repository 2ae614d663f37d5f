"""Sweeps on Optuna: search a model and its TrainConfig, every trial a normal run directory.

    >>> space = load_space("examples/sweeps/small.toml")
    >>> result = sweep(space, "sweeps/small", trials=20)       # this process is one worker
    >>> result["best"]["run"], result["best"]["val_acc"], result["best"]["test_acc"]

The objective is validation accuracy; trials never see the test split (they are handed the
dataset without it), and the test set scores the chosen model once, at the end. Optuna prunes
a trial from its per-epoch validation accuracy (median pruner). The study lives in Optuna's
storage: by default a journal file in the sweep folder (safe for several processes on one
machine), or any database URL Optuna supports, shared by workers on any machines (`--join`).
A worker that dies loses only its running trial: on one machine, the next worker to start marks
the trials of dead processes failed; on a database, Optuna's heartbeat does.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import string
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.data import Dataset, Split
from digitlab.errors import DigitlabError
from digitlab.jobs.plan import plan_training, read_text
from digitlab.jobs.sweep_report import split_limit, summarise
from digitlab.jobs.train import start
from digitlab.train import TRAIN_FIELDS, Callback, TrainConfig

JOURNAL = "journal.log"  # the default storage, inside the sweep folder
KINDS = ("float", "int", "choices")
PRUNER_STARTUP = 3  # trials that always run to the end before pruning starts
STOP_STATES = ("COMPLETE", "PRUNED")  # trials that count towards --trials


@dataclass(frozen=True)
class Space:
    """A sweep's space file: the model(s), the TrainConfig fields held fixed and searched."""

    path: Path
    name: str
    model: tuple[str, ...]  # one or more (a categorical); {name} placeholders are searched
    engine: str | None
    fixed: dict
    search: dict  # name -> {"float": [lo, hi]} | {"int": [lo, hi]} | {"choices": [...]}, "log"
    trials: int
    limit: int | None
    text: str  # the file as written, kept in the study
    sampler: str = "tpe"  # or "grid": every combination of the choices, each once
    prune: bool = True


@functools.cache  # once: the warnings filter below must not be added again at every call
def optuna():
    try:
        import optuna as module
    except ImportError:
        raise DigitlabError(
            "sweeps need Optuna: pip install 'digitlab[sweep]' (or make venv)"
        ) from None
    module.logging.set_verbosity(module.logging.WARNING)
    # the heartbeat and the journal's file lock are marked experimental; both are what we want
    warnings.filterwarnings("ignore", category=module.exceptions.ExperimentalWarning)
    return module


def load_space(path: str | os.PathLike[str]) -> Space:
    """Read and check a space file; every mistake is one line naming the file and the field."""
    path = Path(path)
    text = read_text(path, "a sweep space (.toml)")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DigitlabError(f"{path}: not valid TOML ({e})") from None
    known = {"name", "model", "engine", "fixed", "search", "trials", "limit", "sampler", "prune"}
    if unknown := sorted(set(raw) - known):
        raise DigitlabError(
            f"{path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    model = raw.get("model")
    models = (model,) if isinstance(model, str) else tuple(model or ())
    if model is None:
        raise DigitlabError(f"{path}: model is missing (a preset or shorthand, or a list of them)")
    if not models or not all(isinstance(m, str) and m for m in models):
        raise DigitlabError(f"{path}: model must be a preset or shorthand, or a list of them")
    fixed, search = raw.get("fixed", {}), raw.get("search", {})
    if not isinstance(fixed, dict) or not isinstance(search, dict):
        raise DigitlabError(f"{path}: [fixed] and [search] must be tables")
    placeholders = {f[1] for m in models for f in string.Formatter().parse(m) if f[1]}
    defaults = TrainConfig()
    for name, value in fixed.items():
        if name not in TRAIN_FIELDS:
            raise DigitlabError(f"{path}: fixed.{name}: not a training setting")
        want = type(getattr(defaults, name))
        numeric = want is float and isinstance(value, int) and not isinstance(value, bool)
        if getattr(defaults, name) is not None and not (isinstance(value, want) or numeric):
            raise DigitlabError(f"{path}: fixed.{name}: must be {want.__name__}, got {value!r:.40}")
    if fixed.get("val_split", defaults.val_split) <= 0:
        raise DigitlabError(f"{path}: fixed.val_split must be > 0: a sweep chooses on validation")
    base = TrainConfig().to_dict() | fixed
    for name, rule in search.items():
        check_rule(path, name, rule, placeholders, fixed)
        if name in TRAIN_FIELDS:  # each choice, and each end of a range, must be a setting
            ends = rule.get("choices") or rule.get("float") or rule.get("int")
            for value in ends:
                try:
                    TrainConfig.from_dict(base | {name: value}).validate()
                except DigitlabError as e:
                    raise DigitlabError(f"{path}: search.{name}: {e}") from None
                except (TypeError, ValueError) as e:
                    raise DigitlabError(f"{path}: search.{name}: {str(e)[:160]}") from None
    if missing := sorted(placeholders - set(search)):
        raise DigitlabError(
            f"{path}: model names {{{missing[0]}}} but [search.{missing[0]}] is missing"
        )
    trials, limit = raw.get("trials", 20), raw.get("limit")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise DigitlabError(f"{path}: trials must be a positive integer, got {trials!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 100):
        raise DigitlabError(f"{path}: limit must be an integer of at least 100, got {limit!r}")
    engine = raw.get("engine")
    if engine not in (None, "numpy", "torch"):
        raise DigitlabError(f"{path}: engine must be numpy or torch, got {engine!r}")
    for model_text in models:  # every setting and model that can be checked before a trial
        try:
            if not any(f[1] for f in string.Formatter().parse(model_text)):
                plan_training(model=model_text, engine=engine, **fixed)
            else:
                TrainConfig.from_dict(TrainConfig().to_dict() | fixed).validate()
        except DigitlabError as e:
            raise DigitlabError(f"{path}: {e}") from None
        except (TypeError, ValueError) as e:
            raise DigitlabError(f"{path}: [fixed] {str(e)[:160]}") from None
    sampler, prune = raw.get("sampler", "tpe"), raw.get("prune", True)
    if sampler not in ("tpe", "grid") or not isinstance(prune, bool):
        raise DigitlabError(f"{path}: sampler must be tpe or grid, and prune true or false")
    if sampler == "grid" and not all("choices" in rule for rule in search.values()):
        raise DigitlabError(f"{path}: a grid searches choices only; give every [search.X] choices")
    name = str(raw.get("name") or path.stem)
    return Space(path, name, models, engine, dict(fixed), dict(search), trials, limit, text,
                 sampler, prune)  # fmt: skip


def check_rule(path: Path, name: str, rule, placeholders: set[str], fixed: dict) -> None:
    where = f"{path}: search.{name}"
    if name in fixed:  # the search won, without a word
        raise DigitlabError(f"{where}: also in [fixed]; keep it in one of them")
    if name not in TRAIN_FIELDS and name not in placeholders:
        raise DigitlabError(f"{where}: not a training setting nor a {{{name}}} in model")
    if name in ("split_seed", "val_split"):  # the score would reward the easiest held-out images
        raise DigitlabError(
            f"{where}: trials are compared on one validation split: set it in [fixed], not [search]"
        )
    if not isinstance(rule, dict) or sum(k in rule for k in KINDS) != 1:
        raise DigitlabError(f"{where}: give one of float = [low, high], int = [low, high], choices")
    if unknown := sorted(set(rule) - {*KINDS, "log"}):  # a typo would search as if unsaid
        raise DigitlabError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(KINDS)}, log")
    if "log" in rule and ("choices" in rule or not isinstance(rule["log"], bool)):
        raise DigitlabError(f"{where}: log must be true or false, beside float or int")
    if "choices" in rule:
        if not isinstance(rule["choices"], list) or not rule["choices"]:
            raise DigitlabError(f"{where}: choices must be a non-empty list")
        return
    kind = "float" if "float" in rule else "int"
    bounds = rule[kind]
    numeric = (int,) if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, numeric) and not isinstance(b, bool) for b in bounds)
        or not np.isfinite(bounds).all()
        or bounds[0] >= bounds[1]
        or (rule.get("log") and bounds[0] <= 0)
    ):
        raise DigitlabError(f"{where}: {kind} must be [low, high] with low < high (> 0 for log)")


def suggest(trial, space: Space) -> tuple[str, dict]:
    """The trial's model (placeholders filled) and TrainConfig settings."""
    params = {}
    for name, rule in space.search.items():
        if "choices" in rule:
            params[name] = trial.suggest_categorical(name, rule["choices"])
        elif "float" in rule:
            params[name] = trial.suggest_float(name, *rule["float"], log=bool(rule.get("log")))
        else:
            params[name] = trial.suggest_int(name, *rule["int"], log=bool(rule.get("log")))
    model = (
        space.model[0]
        if len(space.model) == 1
        else trial.suggest_categorical("model", list(space.model))
    )
    settings = space.fixed | {k: v for k, v in params.items() if k in TRAIN_FIELDS}
    return model.format(**params), settings


class Pruning(Callback):
    """Report each epoch's validation accuracy to Optuna; stop the trial when it says prune."""

    def __init__(self, trial):
        self.trial = trial

    def on_epoch_end(self, trainer, row: dict) -> None:
        self.trial.report(float(row["val_acc"]), int(row["epoch"]))
        self.trial.set_user_attr("epochs_trained", int(row["epoch"]))
        if self.trial.should_prune():
            raise optuna().TrialPruned(f"pruned after epoch {row['epoch']}")


def without_test(ds: Dataset) -> Dataset:
    """The dataset as a trial sees it: the test split is not there to be looked at."""
    empty = Split(ds.test.images[:0], None if ds.test.labels is None else ds.test.labels[:0])
    return dataclasses.replace(ds, test=empty)


def storage_of(out: Path, url: str | None):
    """Optuna's storage: the sweep folder's journal file, or a database URL with a heartbeat."""
    op = optuna()
    if url is None:
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        out.mkdir(parents=True, exist_ok=True)
        path = str(out / JOURNAL)
        return op.storages.JournalStorage(JournalFileBackend(path, JournalFileOpenLock(path)))
    try:
        return op.storages.RDBStorage(url, heartbeat_interval=10, grace_period=30)
    except Exception as e:  # SQLAlchemy's errors name the URL's problem
        raise DigitlabError(
            f"--storage: cannot open {url.split('@')[-1]!r}: {str(e).splitlines()[0][:160]}"
        ) from None


def open_study(space: Space, out: Path, storage: str | None = None, join: bool = False):
    if out.exists() and not out.is_dir():
        raise DigitlabError(f"{out}: exists and is not a folder")
    if (out / "model.json").exists():
        raise DigitlabError(f"{out}: holds a training run; give the sweep a folder of its own")
    op = optuna()
    store = storage_of(out, storage)
    pruner = (
        op.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP, n_warmup_steps=0)
        if space.prune
        else op.pruners.NopPruner()
    )
    sampler = (
        op.samplers.GridSampler({k: rule["choices"] for k, rule in space.search.items()})
        if space.sampler == "grid"
        else None  # Optuna's default, TPE
    )
    if join:
        try:
            return op.load_study(
                study_name=space.name, storage=store, pruner=pruner, sampler=sampler
            )
        except KeyError:
            raise DigitlabError(
                f"--join: no sweep named {space.name!r} there yet; start it without --join first"
            ) from None
    study = op.create_study(
        study_name=space.name,
        storage=store,
        direction="maximize",
        pruner=pruner,
        sampler=sampler,
        load_if_exists=True,
    )
    trials = study.get_trials(deepcopy=False)
    if "space" not in study.user_attrs or all(t.state.name == "FAIL" for t in trials):
        study.set_user_attr("space", space.text)  # a sweep that never finished a trial is mended
    elif (old := study.user_attrs["space"]) != space.text:
        (was, before), (now, given) = split_limit(old), split_limit(space.text)
        started = f"sweep {space.name!r} was started with"
        why = f"{space.path}: {started} another space"
        if was == now:  # only the --limit the command line added differs
            given, before = (f"--limit {x}" if x else "no --limit" for x in (given, before))
            why = f"{given} here: {started} {before}"
        raise DigitlabError(f"{why}; give it another name, or another --out")
    return study


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study) -> list[int]:
    """Trials left running by a process of this machine that is gone (a killed worker) are
    marked failed, so the study can go on; a database's heartbeat does the same for others."""
    op = optuna()
    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(op.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") == host and isinstance(pid, int) and not alive(pid):
            study._storage.set_trial_state_values(t._trial_id, op.trial.TrialState.FAIL)
            failed.append(t.number)
    if isinstance(study._storage, op.storages.RDBStorage):
        op.storages.fail_stale_trials(study)
    return failed


def objective(space: Space, out: Path, data: Dataset, on_event=None):
    blind = without_test(data)

    def run_trial(trial) -> float:
        model, settings = suggest(trial, space)
        plan = plan_training(model=model, engine=space.engine, **settings)
        if plan.config.val_split <= 0:
            raise DigitlabError(
                f"{space.path}: val_split must be > 0: a sweep chooses on validation"
            )
        run = out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("run", str(run.resolve()))
        trial.set_user_attr("model", model)
        trial.set_user_attr("epochs_planned", plan.config.epochs)
        _, history, _ = start(
            run,
            plan.spec,
            plan.engine,
            plan.config,
            blind,
            limit=space.limit,
            overwrite=True,
            callbacks=[Pruning(trial)],
            on_event=on_event,
            preset=plan.preset,
        )
        best = max(r["val_acc"] for r in history.rows)
        trial.set_user_attr("epochs_trained", len(history.rows))
        return float(best)

    return run_trial


def sweep(
    space: Space,
    out: str | os.PathLike[str],
    data: Dataset,
    trials: int | None = None,
    storage: str | None = None,
    join: bool = False,
    on_event=None,
) -> dict:
    """Run trials in this process until the study holds `trials` finished (complete or pruned)
    trials, counting every worker's; then write the summary and report. Returns the summary."""
    op = optuna()
    out = Path(out)
    study = open_study(space, out, storage, join)
    fail_dead_trials(study)
    total = trials or space.trials
    # a grid's point that another worker is running is taken: counted, or a worker that finished
    # first would start a trial with nothing left to draw but points already given out (twice)
    counted = (*STOP_STATES, "RUNNING") if space.sampler == "grid" else STOP_STATES
    stop = op.study.MaxTrialsCallback(
        total, states=tuple(getattr(op.trial.TrialState, s) for s in counted)
    )

    def failed(study) -> int:
        return sum(t.state.name == "FAIL" for t in study.get_trials(deepcopy=False))

    before = failed(study)  # a mended space's earlier failures are not held against it

    def give_up(study, trial) -> None:  # a space whose every trial fails must not run forever
        if failed(study) - before >= total:
            study.stop()

    if (done := finished(study, counted)) >= total and on_event is not None:
        on_event(f"the study already holds {done} finished trials of {total}: nothing to run")
    if done < total:
        study.optimize(
            objective(space, out, data, on_event),
            callbacks=[stop, give_up],
            catch=(DigitlabError,),
            gc_after_trial=True,
        )
    return summarise(study, space, out, data, on_event, total, storage)


def finished(study, states: tuple[str, ...] = STOP_STATES) -> int:
    return sum(t.state.name in states for t in study.get_trials(deepcopy=False))

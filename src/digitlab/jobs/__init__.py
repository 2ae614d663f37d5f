"""The verbs as library calls: each takes values (a Dataset, a run, a config), writes one folder
and returns what it found. The CLI and the notebooks call these; none of them prints.

    >>> ds = digitlab.load("mnist")
    >>> model, history, test = jobs.start("runs/mlp", PRESETS["mlp-32"].spec, "numpy",
    ...                                   PRESETS["mlp-32"].config, ds)
    >>> jobs.evaluate_run("runs/mlp", data=ds)["accuracy"]
"""

from typing import TYPE_CHECKING

from digitlab import lazy

if TYPE_CHECKING:  # imported on first use: `digitlab train` need not import the report's figures
    from digitlab.jobs.compare import compare_runs
    from digitlab.jobs.ensemble import make_ensemble
    from digitlab.jobs.evaluate import Evaluation, evaluate_run, evaluation
    from digitlab.jobs.explore import explore_dataset
    from digitlab.jobs.export import export_onnx
    from digitlab.jobs.main import main_job
    from digitlab.jobs.plan import Plan, plan_training
    from digitlab.jobs.train import resume, start

_EXPORTS = lazy.type_checking_imports(__file__)

__all__ = [
    "Evaluation",
    "Plan",
    "compare_runs",
    "evaluate_run",
    "evaluation",
    "explore_dataset",
    "export_onnx",
    "main_job",
    "make_ensemble",
    "plan_training",
    "resume",
    "start",
]

__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS, __all__)

"""The `digitlab` command: one thin verb per capability, and the only place that prints.

$ digitlab run                          # start here: data, two models, evaluation, a report
$ digitlab train --model cnn-small --out runs/cnn
$ digitlab predict runs/cnn photo.jpg

Each module registers its verbs on the one Typer app (app.py); the order below is the order
`digitlab --help` lists them in.
"""

from digitlab.cli import jobs  # noqa: F401, I001  (first: `run` leads the help)
from digitlab.cli import data, train, read, sweep  # noqa: F401  (registers the verbs)
from digitlab.cli.app import app, data_app, reflow_help

reflow_help(app, data_app)

__all__ = ["app"]

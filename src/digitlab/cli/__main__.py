"""`python -m digitlab.cli`: the same as the `digitlab` command."""

from digitlab.cli import app

app()

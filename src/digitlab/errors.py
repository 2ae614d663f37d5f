"""Exceptions a user can act on.

Every error digitlab raises on bad input is a `DigitlabError` whose message names
the file or field and what is wrong; the CLI prints it as one line and exits non-zero.

    >>> raise DataError("train.csv: line 3: 783 columns, expected 785")
"""


class DigitlabError(Exception):
    """Base class: a message meant for the user, no traceback needed."""


class DataError(DigitlabError):
    """A dataset or data file is missing, malformed, or does not verify."""

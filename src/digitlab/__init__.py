"""digitlab: handwritten-digit recognition, from raw MNIST files to a served model.

>>> import digitlab
>>> ds = digitlab.load("mnist")          # verified MNIST, cached after the first call
>>> ds.train.images.shape
(60000, 28, 28)
"""

from digitlab.data import Dataset, Split, load, load_files
from digitlab.errors import DataError, DigitlabError

__version__ = "0.1.0"

__all__ = ["DataError", "Dataset", "DigitlabError", "Split", "__version__", "load", "load_files"]

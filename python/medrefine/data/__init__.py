"""Datasets laid out like those medrefine is evaluated on (a folder with ``cases.csv``)."""

from medrefine.data.datasets import Case, Dataset, open_dataset

__all__ = ["Case", "Dataset", "open_dataset"]

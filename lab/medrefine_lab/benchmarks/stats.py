"""The summary figures every benchmark prints."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` (e.g. milliseconds), NaN when there are
    none (a case that was skipped prints as such instead of failing the table)."""
    return float(np.percentile(values, q)) if len(values) else float("nan")

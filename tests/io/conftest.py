"""Fixtures of the io tests (the DICOM series writer is in dicom_maker.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_maker import Series, hippocampus_stored, write_series


@pytest.fixture
def series(tmp_path: Path) -> Series:
    """The shipped hippocampus-007 MRI as an oblique 34-slice series in ``tmp_path/series``."""
    return write_series(tmp_path / "series", hippocampus_stored())

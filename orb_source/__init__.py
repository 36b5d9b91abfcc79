"""Orb billing data in your warehouse, kept exactly in step with the API.

`orb()` is the dlt source; `run_pipeline()` runs it the way the CLI does (lock, pending
packages, extract, normalize, load, deletion sweep).
"""

from .runner import RunReport, make_pipeline, run_pipeline
from .source import orb
from .sweep import sweep_deletions

__all__ = ["RunReport", "make_pipeline", "orb", "run_pipeline", "sweep_deletions"]

"""Tile mapping reports: ``report(model, example_inputs=None) -> TileReport``."""

from .build import config_diff, physical_tile, report
from .counting import VectorWork, vector_work
from .table import LayerRow, ReportTotals, TileReport

__all__ = ["LayerRow", "ReportTotals", "TileReport", "VectorWork", "config_diff",
           "physical_tile", "report", "vector_work"]

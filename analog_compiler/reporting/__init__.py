"""Tile mapping reports: ``report(model, example_inputs=None) -> TileReport``.

One row per analog layer (qualified name, type, logical weight shape, tile grid ``in splits x
out splits`` per group, physical tile, tile count, cell utilization, per-forward MACs, tile MVMs
and ADC conversions, config fields that differ from the global config) and one row per matrix
layer that stayed digital, with the reason the conversion log gives. ``str()`` is a text table,
``to_dict``/``to_json``/``from_json`` machine-readable, ``to_markdown`` a Markdown table and
``plot(path)`` a PNG of every layer's tile grid.

Counting rules (all documented in the report's notes as well):

- Utilization is used cells over the cells of the physical crossbars a layer occupies; a
  crossbar is ``max_output_size x max_input_size`` of the layer's mapping (an unlimited side is
  the layer's largest piece). An auto-tiled 384x384 layer on 512x512 crossbars is 56.2% used,
  not 100% as aihwkit's split-piece arithmetic would say.
- With ``example_inputs`` the model runs once (eval, no grad, RNG restored). Input vectors are
  the rows reaching each tile array: batch x tokens for sequence models, batch x output
  positions for convolutions (the conv reuse factor). MACs = vectors x used cells; tile MVMs =
  vectors x tiles; ADC conversions = vectors x used output rows of every tile. Bound management
  repeats are data dependent and not counted (one pass per vector).
- Digital MACs are every matrix product torch's ``FlopCounterMode`` sees outside the analog op
  (digital layers, functional products, attention score/value products); the analog share is
  ``analog / (analog + digital)``.

With ``hardware=`` (a ``HardwareModel`` or a preset name) the report carries a ``CostReport``:
placement on the chip's cores (``placement``), energy per layer split into DAC, array, ADC and
digital periphery, latency, throughput, area and chips (formulas in ``cost``).
"""

from .build import config_diff, physical_tile, report
from .cost import CostReport, LayerCost
from .counting import VectorWork, vector_work
from .hardware import HardwareModel, as_hardware
from .placement import Placement
from .table import LayerRow, ReportTotals, TileReport

__all__ = ["CostReport", "HardwareModel", "LayerCost", "LayerRow", "Placement", "ReportTotals",
           "TileReport", "VectorWork", "as_hardware", "config_diff", "physical_tile", "report",
           "vector_work"]

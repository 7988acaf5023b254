"""Reading a scan for machine learning: sharded, seeded, streaming batches.

- :mod:`lakehouse.read.plan`: read units (file, row group) from footers, the seeded order,
  disjoint shards, and a picklable :class:`~lakehouse.read.plan.ScanSpec` of a pinned scan;
- :mod:`lakehouse.read.batches`: one shard's rows as batches of exact size, read ahead;
- :mod:`lakehouse.read.torch`: ``Scan.to_torch()`` (needs the ``torch`` extra);
- :mod:`lakehouse.read.ray`: ``Scan.to_ray()`` (needs the ``ray`` extra).

The torch and ray modules import their library at the top, so they are imported only by
``Scan.to_torch``/``Scan.to_ray``, after ``lakehouse.optional.require`` has checked it.
"""

from lakehouse.read.plan import ReadOptionError, ReadUnit, ScanSpec, ShardSpec, UnitPlan

__all__ = ["ReadOptionError", "ReadUnit", "ScanSpec", "ShardSpec", "UnitPlan"]

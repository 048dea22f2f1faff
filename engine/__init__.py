"""Pure computation: arrays in, arrays out; no I/O, no database, no MQTT, no imports from other project packages.

- :mod:`engine.timebase`: UTC epoch microseconds, Bangkok-time day/month/year/fiscal-year edges, Buddhist Era.
- :mod:`engine.counters`: cumulative registers (kWh, litres) to intervals with quality flags; carry state.
- :mod:`engine.buckets`: interval amounts into time buckets, pro rata by time, with quality and coverage.
- :mod:`engine.rollups`: sum/min/max/mean/count/last of readings per bucket.
- :mod:`engine.combine`: devices into sites/city/source classes, fine buckets into coarse, batches into one.
- :mod:`engine.factors`: the dated emission-factor registry (TGO) and source classes (scope, CFO category, GPC).
- :mod:`engine.emissions`: kgCO2e per interval or bucket, split at factor changes; in force or base-year factor.
- :mod:`engine.fused`: registers straight to buckets of energy and both emissions in one pass (the pipeline of
  counters, buckets and emissions, bit for bit, without the intervals): what the stream calls.
- :mod:`engine.streetlights`: burning hours, day burning, night outages; NOAA sunrise/sunset.
- :mod:`engine.kernels`: the numba kernels behind all of these, each also runnable as plain Python
  (``impl="python"``), which is how the tests check one against the other.
"""

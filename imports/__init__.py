"""The files people hand in, read and validated: bytes in, records out. Pure: no database, no network.

- :mod:`imports.rows`: the per-row error every reader reports (row, column as written, value, message) and
  ``RowsInvalid``, raised with all of them at once so a person can fix a spreadsheet in one pass.
- :mod:`imports.registry`: the device registry CSV (sites and devices, English or Thai headers).
- :mod:`imports.inventory`: a CFO inventory in TGO's monthly template, CSV or XLSX, English or Thai headers.
- :mod:`imports.gpc`: GPC v1.1 reference numbers (sector, sub-sector, scope, BASIC or not), for inventory rows.
- :mod:`imports.activity`: manual activity data (CSV, or the API's JSON entries) for current months.
- :mod:`imports.temperature`: daily mean temperatures (CSV) for building M&V.
- :mod:`imports.limits`: bounds on a file (unpacked size and cells of an XLSX, cells of a CSV, errors listed),
  checked before a file costs more than its size suggests.
- :mod:`imports.units`: activity units, their English and Thai spellings, and conversions between them.

The store writes the records these return (store/ imports the record types from here, nothing else of the
project); checks that need stored data (an item code that must exist, a device of another organisation) are made
by the store when it writes, and reported with the same ``RowError``.
"""

"""What carbon staff ask of the data, answered once for the API and the CLI: store reads plus engine arithmetic.

- :mod:`reports.periods`: the periods people name (day, week, month, fiscal or calendar year to date, custom) and
  their month slices; ``RequestInvalid`` for a question asked wrongly.
- :mod:`reports.coverage`: how much of a period the data cover (readings, item-months, the base year's share), and
  the threshold below which a change, projection, verdict or KPI value is withheld.
- :mod:`reports.baseline`: a period against the base year (in force, at base-year factors, and over the covered
  time), the year-end projection item by item.
- :mod:`reports.targets`: reduction targets (emissions or KPIs) and whether each is on track.
- :mod:`reports.kpi`: kWh per lamp, kWh per m², litres per 100 km measured from the mapped meters.
- :mod:`reports.mv`: building M&V (ASHRAE Guideline 14): fit a daily model, avoided energy and emissions.
- :mod:`reports.annual`: the annual TGO CFO report and the GPC BASIC table of an organisation-year.
- :mod:`reports.render`: those two as CSV, JSON and HTML (Jinja2 templates in templates/, package data).

The functions return what ``api/routes/`` answers (JSON documents, or report bytes) and what ``lccm compare``,
``projection``, ``targets``, ``kpis`` and ``report`` print, so both give the same numbers. They raise the domain
errors of the stage that finds the problem (store: unknown organisation, no base year; imports: invalid rows; here:
``RequestInvalid``); api/errors.py maps each to HTTP, the CLI to an exit code.
"""

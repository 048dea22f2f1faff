-- 009: comparison targets, imported daily temperatures and fitted building baselines (M&V).
--
-- * targets: a reduction of reduction_pct below the base-year value by target_year (engine/inventory.Target), for
--   the organisation (category NULL) or one CFO category; or, with kpi set, an action-plan KPI whose yearly values
--   (kpi_values: {"<CE year>": value}, base year included) are the series followed.
-- * temperature_daily: daily mean temperatures (°C, Bangkok dates) imported from a CSV for an organisation, used by
--   the M&V fit when no station of the registry is chosen.
-- * mv_models: the current fitted daily model of a site (kWh/day = b0 + b1 x CDD (+ b2 x workday)), so savings use
--   the model as it was fitted.

CREATE TABLE targets (
    id              serial PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    target_key      text NOT NULL CHECK (target_key ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    category        text,                     -- cfo_categories.code; NULL = the whole organisation
    kpi             text CHECK (kpi IN ('kwh_per_lamp', 'kwh_per_m2', 'l_per_100km')),
    base_year       integer NOT NULL CHECK (base_year BETWEEN 1990 AND 2200),
    year_kind       text NOT NULL CHECK (year_kind IN ('calendar', 'fiscal')),
    target_year     integer NOT NULL,
    reduction_pct   double precision NOT NULL DEFAULT 5 CHECK (reduction_pct >= 0 AND reduction_pct <= 100),
    kpi_values      jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, target_key),
    CHECK (target_year > base_year),
    CHECK (kpi IS NULL OR category IS NULL)
);

CREATE TABLE temperature_daily (
    organisation_id integer NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    day             date NOT NULL,
    mean_c          double precision NOT NULL CHECK (mean_c > -60 AND mean_c < 60),
    source          text NOT NULL CHECK (source <> ''),
    imported_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, day)
);

CREATE TABLE mv_models (
    site_id           integer PRIMARY KEY REFERENCES sites(id) ON DELETE CASCADE,
    baseline_from     date NOT NULL,
    baseline_to       date NOT NULL,          -- exclusive
    base_temp_c       double precision NOT NULL,
    terms             text[] NOT NULL,
    coef              double precision[] NOT NULL,
    station_device_id integer REFERENCES devices(id),  -- NULL = the organisation's imported temperatures
    holidays          date[] NOT NULL DEFAULT '{}',
    zeros_as_missing  boolean NOT NULL,
    stats             jsonb NOT NULL,
    fitted_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (baseline_to > baseline_from),
    CHECK (cardinality(coef) = cardinality(terms))
);

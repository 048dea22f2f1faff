-- 001: sites, devices, the metric catalogue, readings and dead letters.
-- The readings layout (hypertable or BRIN) is chosen in Python at migrate time and recorded in store_layout.

CREATE TABLE sites (
    id          serial PRIMARY KEY,
    site_code   text NOT NULL UNIQUE,
    name        text NOT NULL,
    name_th     text,
    kind        text NOT NULL,          -- building, street, station, fleet, plant ...
    city        text NOT NULL,
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    floor_area_m2 double precision CHECK (floor_area_m2 > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id          serial PRIMARY KEY,
    device_id   text NOT NULL UNIQUE CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    site_id     integer NOT NULL REFERENCES sites(id),
    kind        text NOT NULL,          -- electricity_meter, streetlight_cabinet, lamp, aq_station, fuel_meter
    name        text NOT NULL,
    cadence_s   integer NOT NULL CHECK (cadence_s > 0),
    rated_kw    double precision CHECK (rated_kw >= 0),
    meta        jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_site_idx ON devices (site_id);

-- The metric catalogue is the message contract's table (docs/contract.md): one row per quantity, its canonical
-- unit, and the units accepted on the wire with the factor that converts them to the canonical unit.
CREATE TABLE metrics (
    id          smallint PRIMARY KEY,
    name        text NOT NULL UNIQUE,   -- SenML name and the stem of the plain-JSON key
    unit        text NOT NULL,          -- canonical unit (SenML spelling)
    key         text NOT NULL UNIQUE,   -- canonical plain-JSON key, unit in the name
    kind        text NOT NULL CHECK (kind IN ('register', 'instant', 'state')),
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    description text NOT NULL
);

CREATE TABLE metric_units (
    metric_id   smallint NOT NULL REFERENCES metrics(id),
    unit        text NOT NULL,          -- as written in SenML "u"
    key_suffix  text NOT NULL,          -- as written at the end of a plain-JSON key
    scale       double precision NOT NULL,  -- canonical = value * scale
    PRIMARY KEY (metric_id, unit)
);

INSERT INTO metrics (id, name, unit, key, kind, min_value, max_value, description) VALUES
 (1,  'energy',       'kWh',   'energy_kwh',      'register', 0, 1e12, 'cumulative active-energy register'),
 (2,  'power',        'W',     'power_w',         'instant',  -1e9, 1e9, 'instantaneous active power'),
 (3,  'voltage',      'V',     'voltage_v',       'instant',  0, 1e6, 'RMS voltage'),
 (4,  'current',      'A',     'current_a',       'instant',  0, 1e5, 'RMS current'),
 (5,  'power_factor', '/',     'power_factor',    'instant',  -1, 1, 'power factor'),
 (6,  'lamp_on',      '',      'lamp_on',         'state',    0, 1, 'lamp switched on (1) or off (0)'),
 (7,  'dimming',      '%',     'dimming_pct',     'instant',  0, 100, 'dimming level, 100 = full output'),
 (8,  'fuel',         'l',     'fuel_l',          'register', 0, 1e12, 'cumulative fuel-dispensed register'),
 (9,  'pm25',         'ug/m3', 'pm25_ugm3',       'instant',  0, 5000, 'PM2.5 mass concentration'),
 (10, 'pm10',         'ug/m3', 'pm10_ugm3',       'instant',  0, 10000, 'PM10 mass concentration'),
 (11, 'so2',          'ppb',   'so2_ppb',         'instant',  0, 100000, 'sulphur dioxide'),
 (12, 'no2',          'ppb',   'no2_ppb',         'instant',  0, 100000, 'nitrogen dioxide'),
 (13, 'o3',           'ppb',   'o3_ppb',          'instant',  0, 100000, 'ozone'),
 (14, 'co',           'ppm',   'co_ppm',          'instant',  0, 10000, 'carbon monoxide'),
 (15, 'temperature',  'Cel',   'temperature_c',   'instant',  -60, 70, 'air temperature'),
 (16, 'humidity',     '%RH',   'humidity_pct',    'instant',  0, 100, 'relative humidity');

-- Gas conversions at 25 degC and 1 atm (molar volume 24.45 L): ppb = ug/m3 * 24.45 / M.
INSERT INTO metric_units (metric_id, unit, key_suffix, scale) VALUES
 (1, 'kWh', 'kwh', 1), (1, 'Wh', 'wh', 0.001), (1, 'MWh', 'mwh', 1000), (1, 'J', 'j', 1.0 / 3600000),
 (2, 'W', 'w', 1), (2, 'kW', 'kw', 1000),
 (3, 'V', 'v', 1), (4, 'A', 'a', 1), (5, '/', '', 1),
 (6, '', '', 1),
 (7, '%', 'pct', 1),
 (8, 'l', 'l', 1), (8, 'L', 'litre', 1), (8, 'm3', 'm3', 1000),
 (9, 'ug/m3', 'ugm3', 1), (10, 'ug/m3', 'ugm3', 1),
 (11, 'ppb', 'ppb', 1), (11, 'ppm', 'ppm', 1000), (11, 'ug/m3', 'ugm3', 24.45 / 64.066),
 (12, 'ppb', 'ppb', 1), (12, 'ppm', 'ppm', 1000), (12, 'ug/m3', 'ugm3', 24.45 / 46.0055),
 (13, 'ppb', 'ppb', 1), (13, 'ppm', 'ppm', 1000), (13, 'ug/m3', 'ugm3', 24.45 / 47.9982),
 (14, 'ppm', 'ppm', 1), (14, 'ppb', 'ppb', 0.001), (14, 'mg/m3', 'mgm3', 24.45 / 28.010),
 (15, 'Cel', 'c', 1),
 (16, '%RH', 'pct', 1);

-- Readings: one row per (device, metric, event time); a duplicate is a no-op. Values are in the canonical unit.
CREATE TABLE readings (
    device_id   integer NOT NULL,
    metric_id   smallint NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    seq         bigint,                 -- the device's message sequence number, when it sends one
    received_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, metric_id, ts)
);

-- Everything the decoder refused, kept whole so a person can see it and replay it.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    device_ref  text                    -- the device id the topic named, if it parsed
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason);

-- Retained status messages (online/offline, also the last will).
CREATE TABLE device_status (
    device_id   integer PRIMARY KEY REFERENCES devices(id),
    status      text NOT NULL,
    changed_at  timestamptz NOT NULL
);

-- 007: the organisation inventory (TGO CFO): organisations, reporting years, inventory items with monthly
-- quantities, the import log, and the explicit device -> item mapping for metered items.
--
-- Conventions (docs/inventory-template.md has the user-facing side):
-- * A reporting year is a calendar year (Jan-Dec, TGO form 1.5(1)) or a Thai fiscal year (Oct-Sep) named by the
--   calendar year it ends in: fiscal 2025 = 2024-10-01 .. 2025-09-30 (ปีงบประมาณ พ.ศ. 2568). BE = CE + 543.
--   (docs/reference.md#reporting-years, docs/reference.md#thai-fiscal-year)
-- * Months are Asia/Bangkok calendar months, stored as the date of their first day. A view cannot take a parameter,
--   so the views below write the zone as the literal 'Asia/Bangkok' = lccm.engine.timebase.CITY_TZ_NAME.
-- * Quantities and factors are never negative. A removal (e.g. trees in pocket parks) is an item whose category is
--   a removal category; its emissions are -(quantity x factor). The flag follows the category by foreign key.
-- * Metered items are filled from energy_buckets through device_item_map; manual items from imports and entries.
--   One device feeds at most one item per reporting year, and only a metered one (constraints below); the view
--   inventory_mapping_problems lists whatever else could count an activity twice.

CREATE TABLE organisations (
    id                serial PRIMARY KEY,
    code              text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name_en           text NOT NULL CHECK (name_en <> ''),
    name_th           text,
    province_en       text NOT NULL CHECK (province_en <> ''),
    province_th       text,
    -- city: เทศบาลนคร, town: เทศบาลเมือง, subdistrict: เทศบาลตำบล, sao: อบต., pao: อบจ., special: กทม./เมืองพัทยา
    municipality_type text NOT NULL CHECK (municipality_type IN ('city', 'town', 'subdistrict', 'sao', 'pao', 'special')),
    -- Sites whose registry "city" equals this (case-folded) belong to the organisation unless sites.organisation_id
    -- says otherwise; so the device-registry CSV needs no new column.
    city_key          text UNIQUE CHECK (city_key = lower(city_key)),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

INSERT INTO organisations (code, name_en, name_th, province_en, province_th, municipality_type, city_key)
VALUES ('lampang', 'Lampang City Municipality', 'เทศบาลนครลำปาง', 'Lampang', 'ลำปาง', 'city', 'lampang');

ALTER TABLE sites ADD COLUMN organisation_id integer REFERENCES organisations(id);

CREATE VIEW site_organisations AS
SELECT s.id AS site_id, coalesce(s.organisation_id, o.id) AS organisation_id
FROM sites s LEFT JOIN organisations o ON o.city_key = lower(s.city);

-- TGO CFO categories and the scopes each may be reported in (TGO CFO calculation form 1.5(1); Jutidamrongphan et
-- al., IntechOpen 2018; docs/reference.md#scopes-and-cfo-categories). Landfill may be scope 1 or 3 depending on the
-- organisational boundary (the Songkhla case reported it as scope 3).
CREATE TABLE cfo_categories (
    code        text NOT NULL,
    scope       smallint NOT NULL CHECK (scope IN (1, 2, 3)),
    name_en     text NOT NULL,
    name_th     text NOT NULL,
    is_removal  boolean NOT NULL DEFAULT false,
    sort        smallint NOT NULL,
    PRIMARY KEY (code, scope),
    UNIQUE (code, scope, is_removal)
);

INSERT INTO cfo_categories (code, scope, name_en, name_th, is_removal, sort) VALUES
 ('stationary_combustion', 1, 'Stationary combustion', 'การเผาไหม้อยู่กับที่', false, 1),
 ('mobile_combustion', 1, 'Mobile combustion', 'การเผาไหม้เคลื่อนที่', false, 2),
 ('fugitive_refrigerant', 1, 'Fugitive - refrigerants', 'การรั่วไหลของสารทำความเย็น', false, 3),
 ('fugitive_wastewater', 1, 'Fugitive - wastewater', 'การบำบัดน้ำเสีย', false, 4),
 ('waste_landfill', 1, 'Landfill / waste disposal', 'การฝังกลบขยะมูลฝอย', false, 5),
 ('waste_landfill', 3, 'Landfill / waste disposal', 'การฝังกลบขยะมูลฝอย', false, 5),
 ('purchased_electricity', 2, 'Purchased electricity', 'การใช้พลังงานไฟฟ้า', false, 6),
 ('other_indirect', 3, 'Other indirect', 'การปล่อยก๊าซเรือนกระจกทางอ้อมอื่น ๆ', false, 7),
 ('removal', 1, 'Removals', 'การดูดกลับก๊าซเรือนกระจก', true, 8);

CREATE TABLE reporting_years (
    id              serial PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations(id),
    kind            text NOT NULL CHECK (kind IN ('calendar', 'fiscal')),
    year_ce         integer NOT NULL CHECK (year_ce BETWEEN 1990 AND 2200),
    year_be         integer GENERATED ALWAYS AS (year_ce + 543) STORED,
    first_month     date GENERATED ALWAYS AS (
                        make_date(CASE WHEN kind = 'fiscal' THEN year_ce - 1 ELSE year_ce END,
                                  CASE WHEN kind = 'fiscal' THEN 10 ELSE 1 END, 1)) STORED,
    is_base_year    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, kind, year_ce)
);
-- One base year per organisation.
CREATE UNIQUE INDEX reporting_years_one_base_idx ON reporting_years (organisation_id) WHERE is_base_year;

-- Every file or batch of entries offered, applied or not: a rejected file keeps its errors here for people to see.
CREATE TABLE inventory_imports (
    id              bigserial PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations(id),
    kind            text NOT NULL CHECK (kind IN ('inventory', 'activity')),
    year_kind       text CHECK (year_kind IN ('calendar', 'fiscal')),
    year_ce         integer,
    file_name       text NOT NULL,
    file_format     text NOT NULL CHECK (file_format IN ('csv', 'xlsx', 'json')),
    sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    status          text NOT NULL CHECK (status IN ('applied', 'unchanged', 'rejected')),
    rows            integer NOT NULL CHECK (rows >= 0),
    errors          jsonb NOT NULL DEFAULT '[]'::jsonb,
    summary         jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_imports_org_idx ON inventory_imports (organisation_id, imported_at);

CREATE TABLE inventory_items (
    id                 serial PRIMARY KEY,
    reporting_year_id  integer NOT NULL REFERENCES reporting_years(id) ON DELETE CASCADE,
    item_code          text NOT NULL CHECK (item_code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    position           integer NOT NULL,             -- row order of the form
    scope              smallint NOT NULL,
    cfo_category       text NOT NULL,
    is_removal         boolean NOT NULL DEFAULT false,
    activity_en        text,
    activity_th        text,
    unit               text NOT NULL,                -- canonical activity unit: kWh, L, kg, t, m3 ...
    ef_kgco2e_per_unit double precision NOT NULL CHECK (ef_kgco2e_per_unit >= 0
                                                         AND ef_kgco2e_per_unit < 'Infinity'::float8),
    ef_unit            text NOT NULL,                -- as written in the form, e.g. kgCO2e/kWh
    ef_source          text NOT NULL CHECK (ef_source <> ''),
    gwp_set            text NOT NULL DEFAULT 'AR5' CHECK (gwp_set IN ('AR4', 'AR5', 'AR6')),
    gas                text,                         -- the gas when the factor is its GWP (refrigerants)
    gpc_ref            text CHECK (gpc_ref ~ '^(I|II|III|IV|V|VI)\.[1-9][0-9]?(\.[1-3])?$'),
    collection         text NOT NULL CHECK (collection IN ('metered', 'manual')),
    source_class       text,                         -- device_sources.source_class this activity belongs to
    note               text,
    import_id          bigint REFERENCES inventory_imports(id),
    CHECK (coalesce(activity_en, activity_th) IS NOT NULL),
    CHECK (NOT (is_removal AND collection = 'metered')),
    FOREIGN KEY (cfo_category, scope, is_removal) REFERENCES cfo_categories (code, scope, is_removal),
    UNIQUE (reporting_year_id, item_code),
    UNIQUE (id, reporting_year_id, collection)       -- target of device_item_map's foreign key
);
CREATE INDEX inventory_items_source_class_idx ON inventory_items (source_class) WHERE source_class IS NOT NULL;

-- One quantity per item and Bangkok month (TGO's form is one cell per source and month), in the item's unit.
CREATE TABLE inventory_quantities (
    item_id     integer NOT NULL REFERENCES inventory_items(id) ON DELETE CASCADE,
    month_start date NOT NULL CHECK (extract(day FROM month_start) = 1),
    quantity    double precision NOT NULL CHECK (quantity >= 0 AND quantity < 'Infinity'::float8),
    origin      text NOT NULL CHECK (origin IN ('import', 'api', 'csv')),
    note        text,
    source_file text,
    import_id   bigint REFERENCES inventory_imports(id),
    entered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, month_start)
);

-- The explicit device -> item mapping of metered items. The primary key allows one item per device and reporting
-- year; the foreign key carries the item's collection, which must be 'metered' (re-marking a mapped item manual
-- fails instead of silently counting its devices and its manual entries together).
CREATE TABLE device_item_map (
    device_id         integer NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    reporting_year_id integer NOT NULL,
    item_id           integer NOT NULL,
    collection        text NOT NULL DEFAULT 'metered' CHECK (collection = 'metered'),
    mapped_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, reporting_year_id),
    FOREIGN KEY (item_id, reporting_year_id, collection)
        REFERENCES inventory_items (id, reporting_year_id, collection) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX device_item_map_item_idx ON device_item_map (item_id);

-- The register an item can be filled from, per device kind (the kinds with a cumulative register).
CREATE VIEW device_registers AS
SELECT d.id AS device_id, m.id AS metric_id, m.unit
FROM devices d
JOIN metrics m ON m.id = CASE d.kind WHEN 'fuel_meter' THEN 8 ELSE 1 END
WHERE d.kind IN ('electricity_meter', 'streetlight_cabinet', 'fuel_meter');

-- Metered items month by month from the engine's monthly buckets (Bangkok months) of their mapped devices, within
-- the item's reporting year. 'Asia/Bangkok' = lccm.engine.timebase.CITY_TZ_NAME (a view takes no parameter). quantity is in the item's unit (kWh or L: the metric's canonical unit, case-folded).
CREATE VIEW inventory_metered_months AS
SELECT i.id AS item_id,
       i.reporting_year_id,
       (eb.bucket_start AT TIME ZONE 'Asia/Bangkok')::date AS month_start,
       sum(eb.amount) AS quantity,
       sum(eb.amount_estimated) AS quantity_estimated,
       sum(eb.kgco2e) AS kgco2e,
       sum(eb.kgco2e_base) AS kgco2e_base,
       count(DISTINCT eb.device_id) AS devices,
       max(eb.quality) AS worst_quality
FROM device_item_map dm
JOIN inventory_items i ON i.id = dm.item_id
JOIN reporting_years y ON y.id = dm.reporting_year_id
JOIN energy_buckets eb ON eb.device_id = dm.device_id AND eb.resolution = '1mo'
JOIN metrics mt ON mt.id = eb.metric_id AND lower(mt.unit) = lower(i.unit)
WHERE eb.bucket_start >= (y.first_month::timestamp AT TIME ZONE 'Asia/Bangkok')
  AND eb.bucket_start < ((y.first_month + interval '1 year') AT TIME ZONE 'Asia/Bangkok')
GROUP BY i.id, i.reporting_year_id, eb.bucket_start;

-- Everything that could count one activity twice (severity 'error') or leave a meter out (severity 'warning').
-- The first two cannot happen while the constraints above hold; they are listed so the check stays complete even
-- if a constraint is ever relaxed.
CREATE VIEW inventory_mapping_problems AS
WITH mapped AS (
    SELECT dm.device_id, dm.item_id, dm.reporting_year_id, y.organisation_id, i.item_code, i.collection,
           i.unit, i.source_class AS item_class, ds.source_class AS device_class, so.organisation_id AS device_org,
           dr.unit AS register_unit
    FROM device_item_map dm
    JOIN inventory_items i ON i.id = dm.item_id
    JOIN reporting_years y ON y.id = dm.reporting_year_id
    JOIN devices d ON d.id = dm.device_id
    LEFT JOIN device_sources ds ON ds.device_id = dm.device_id
    LEFT JOIN site_organisations so ON so.site_id = d.site_id
    LEFT JOIN device_registers dr ON dr.device_id = dm.device_id
)
SELECT 'error'::text AS severity, 'mapped_to_manual_item'::text AS problem, organisation_id, reporting_year_id,
       device_id, item_id, 'item ' || item_code || ' is manual: its quantities are entered by hand' AS detail
FROM mapped WHERE collection <> 'metered'
UNION ALL
SELECT 'error', 'device_in_two_items', min(organisation_id), reporting_year_id, device_id, min(item_id),
       'device feeds ' || count(*) || ' items in one reporting year'
FROM mapped GROUP BY device_id, reporting_year_id HAVING count(*) > 1
UNION ALL
SELECT 'error', 'device_of_other_organisation', organisation_id, reporting_year_id, device_id, item_id,
       'the device''s site belongs to ' || coalesce('organisation ' || device_org, 'no organisation')
FROM mapped WHERE device_org IS DISTINCT FROM organisation_id
UNION ALL
SELECT 'error', 'unit_mismatch', organisation_id, reporting_year_id, device_id, item_id,
       'item ' || item_code || ' is in ' || unit || ' but the device '
       || coalesce('counts ' || register_unit, 'has no register')
FROM mapped WHERE register_unit IS NULL OR lower(register_unit) <> lower(unit)
UNION ALL
SELECT 'error', 'source_class_mismatch', organisation_id, reporting_year_id, device_id, item_id,
       'item ' || item_code || ' is ' || item_class || ' but the device is ' || coalesce(device_class, 'unclassified')
FROM mapped WHERE item_class IS NOT NULL AND item_class IS DISTINCT FROM device_class
UNION ALL
SELECT 'error', 'manual_quantities_on_metered_item', y.organisation_id, i.reporting_year_id, NULL, i.id,
       'item ' || i.item_code || ' has devices and hand-entered quantities for ' || count(*) || ' month(s)'
FROM inventory_items i
JOIN reporting_years y ON y.id = i.reporting_year_id
JOIN inventory_quantities q ON q.item_id = i.id AND q.origin <> 'import'
WHERE EXISTS (SELECT 1 FROM device_item_map dm WHERE dm.item_id = i.id)
GROUP BY y.organisation_id, i.reporting_year_id, i.id, i.item_code
UNION ALL
SELECT 'error', 'metered_class_on_manual_item', y.organisation_id, i.reporting_year_id, d.id, i.id,
       'item ' || i.item_code || ' is manual but device ' || d.device_id || ' meters ' || i.source_class
FROM inventory_items i
JOIN reporting_years y ON y.id = i.reporting_year_id
JOIN device_sources ds ON ds.source_class = i.source_class
JOIN devices d ON d.id = ds.device_id
JOIN site_organisations so ON so.site_id = d.site_id AND so.organisation_id = y.organisation_id
WHERE i.collection = 'manual'
UNION ALL
SELECT 'warning', 'device_unmapped', y.organisation_id, y.id, d.id, NULL,
       'device ' || d.device_id || ' meters ' || ds.source_class || ' but feeds no item of this year'
FROM reporting_years y
JOIN inventory_items i ON i.reporting_year_id = y.id AND i.collection = 'metered'
JOIN device_sources ds ON ds.source_class = i.source_class
JOIN devices d ON d.id = ds.device_id
JOIN site_organisations so ON so.site_id = d.site_id AND so.organisation_id = y.organisation_id
WHERE NOT EXISTS (SELECT 1 FROM device_item_map dm WHERE dm.device_id = d.id AND dm.reporting_year_id = y.id)
  -- only years that use meters at all: a base year taken from bills before the meters existed maps nothing
  AND EXISTS (SELECT 1 FROM device_item_map dm WHERE dm.reporting_year_id = y.id)
GROUP BY y.organisation_id, y.id, d.id, d.device_id, ds.source_class;

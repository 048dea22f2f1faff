-- 017: the bucket tables partitioned by resolution (issue 14 item 5: dashboards stay fast at a year of data).
--
-- The updaters write the 15-minute rows and re-derive the hour, day and month rows above them in the same
-- transaction, so in one heap the day and month rows were strewn among ~100 times as many finer rows: a fiscal
-- year by site at 1 day read one heap page per row (benchmarks/city_year.py). Each resolution now has its own
-- partition, so a year of daily rows is a few dense pages per meter. Same columns, keys, indexes and queries; the
-- rows are copied as they are. Plain PostgreSQL partitioning, so it is the same with TimescaleDB present (these
-- tables were never hypertables).

-- The one view over these tables (007) is dropped and made again from its own stored definition.
CREATE TEMP TABLE view_017 ON COMMIT DROP AS
    SELECT pg_get_viewdef('inventory_metered_months'::regclass) AS definition;
DROP VIEW inventory_metered_months;

ALTER TABLE energy_buckets RENAME TO energy_buckets_017;
CREATE TABLE energy_buckets (LIKE energy_buckets_017 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST (resolution);
CREATE TABLE energy_buckets_15min PARTITION OF energy_buckets FOR VALUES IN ('15min');
CREATE TABLE energy_buckets_1h PARTITION OF energy_buckets FOR VALUES IN ('1h');
CREATE TABLE energy_buckets_1d PARTITION OF energy_buckets FOR VALUES IN ('1d');
CREATE TABLE energy_buckets_1mo PARTITION OF energy_buckets FOR VALUES IN ('1mo');
INSERT INTO energy_buckets SELECT * FROM energy_buckets_017 ORDER BY resolution, device_id, metric_id, bucket_start;
DROP TABLE energy_buckets_017;
ALTER TABLE energy_buckets ADD PRIMARY KEY (resolution, device_id, metric_id, bucket_start);
CREATE INDEX energy_buckets_time_idx ON energy_buckets (resolution, bucket_start);

ALTER TABLE sample_buckets RENAME TO sample_buckets_017;
CREATE TABLE sample_buckets (LIKE sample_buckets_017 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST (resolution);
CREATE TABLE sample_buckets_15min PARTITION OF sample_buckets FOR VALUES IN ('15min');
CREATE TABLE sample_buckets_1h PARTITION OF sample_buckets FOR VALUES IN ('1h');
CREATE TABLE sample_buckets_1d PARTITION OF sample_buckets FOR VALUES IN ('1d');
CREATE TABLE sample_buckets_1mo PARTITION OF sample_buckets FOR VALUES IN ('1mo');
INSERT INTO sample_buckets SELECT * FROM sample_buckets_017 ORDER BY resolution, device_id, metric_id, bucket_start;
DROP TABLE sample_buckets_017;
ALTER TABLE sample_buckets ADD PRIMARY KEY (resolution, device_id, metric_id, bucket_start);
CREATE INDEX sample_buckets_time_idx ON sample_buckets (resolution, metric_id, bucket_start);

ALTER TABLE lamp_buckets RENAME TO lamp_buckets_017;
CREATE TABLE lamp_buckets (LIKE lamp_buckets_017 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST (resolution);
CREATE TABLE lamp_buckets_15min PARTITION OF lamp_buckets FOR VALUES IN ('15min');
CREATE TABLE lamp_buckets_1h PARTITION OF lamp_buckets FOR VALUES IN ('1h');
CREATE TABLE lamp_buckets_1d PARTITION OF lamp_buckets FOR VALUES IN ('1d');
CREATE TABLE lamp_buckets_1mo PARTITION OF lamp_buckets FOR VALUES IN ('1mo');
INSERT INTO lamp_buckets SELECT * FROM lamp_buckets_017 ORDER BY resolution, device_id, bucket_start;
DROP TABLE lamp_buckets_017;
ALTER TABLE lamp_buckets ADD PRIMARY KEY (resolution, device_id, bucket_start);
CREATE INDEX lamp_buckets_time_idx ON lamp_buckets (resolution, bucket_start);

DO $$ BEGIN
    EXECUTE 'CREATE VIEW inventory_metered_months AS ' || (SELECT definition FROM view_017);
END $$;

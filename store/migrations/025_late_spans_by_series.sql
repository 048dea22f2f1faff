-- 025: the sample updater continues a bucket's stored 15-minute row with the readings after it, rather than
-- reading the whole bucket again (store/samples.py: stored_prefix), unless a reading that arrived too late to be
-- queued (an open late span) may lie in the bucket before that row's last reading: then it reads the bucket whole,
-- as before, so the bucket holds what a whole read gives. This index answers that per (device, metric) and bucket.
CREATE INDEX late_spans_open_series_idx ON late_spans (device_id, metric_id, hi) WHERE resolved_at IS NULL;

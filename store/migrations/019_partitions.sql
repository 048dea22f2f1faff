-- 019: device partitions shared by the ingest processes through leases (issue 14 item 1, docs/partitions.md).
--
-- Derived state (energy and sample buckets, lamp time, AQI hours) belongs to a partition of devices:
-- partition = device primary key mod the partition count. The count is fixed for a database: the first ingest
-- process records it here and a process configured with another count refuses to start (rows of the queues and of
-- the leases would otherwise name different device sets).
CREATE TABLE partition_config (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    partitions  integer NOT NULL CHECK (partitions > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per partition (written with the config). A worker owns a partition while expires_at (PostgreSQL's clock,
-- never a worker's) is in the future; an updater holds its partitions' rows FOR SHARE while it claims and writes,
-- so a partition cannot change hands in the middle of a transaction that derives its state.
CREATE TABLE worker_leases (
    partition   integer PRIMARY KEY CHECK (partition >= 0),
    owner       text,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX worker_leases_owner_idx ON worker_leases (owner);

-- The workers alive: each renews its row with its leases; the fair share of a worker is
-- ceil(partitions / workers seen within the lease time).
CREATE TABLE worker_heartbeats (
    owner       text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);

-- 014: dated assets (issue 15). Sites and devices carry the Bangkok dates they entered and left service, and a
-- device that replaces another names it. A thing is in service over [commissioned_on, decommissioned_on) in
-- Asia/Bangkok days (lccm.engine.timebase.CITY_TZ_NAME): from the midnight starting its commissioning day to the
-- midnight starting its decommissioning day; NULL = since always / until further notice. KPI denominators (lamps,
-- floor area), completeness (nothing is expected from a device outside its service) and lamp counts read them.

ALTER TABLE sites ADD COLUMN commissioned_on date;
ALTER TABLE sites ADD COLUMN decommissioned_on date;
ALTER TABLE sites ADD CONSTRAINT sites_service_order
    CHECK (decommissioned_on IS NULL OR commissioned_on IS NULL OR decommissioned_on > commissioned_on);

ALTER TABLE devices ADD COLUMN commissioned_on date;
ALTER TABLE devices ADD COLUMN decommissioned_on date;
ALTER TABLE devices ADD CONSTRAINT devices_service_order
    CHECK (decommissioned_on IS NULL OR commissioned_on IS NULL OR decommissioned_on > commissioned_on);
-- The device this one replaced (an LED lamp replacing a sodium lamp, a new meter replacing a broken one), by its
-- device_id; checked at commit so a registry file may list the new device before the old one.
ALTER TABLE devices ADD COLUMN replaces text
    REFERENCES devices (device_id) ON UPDATE CASCADE ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE devices ADD CONSTRAINT devices_replaces_other CHECK (replaces <> device_id);
CREATE INDEX devices_replaces_idx ON devices (replaces) WHERE replaces IS NOT NULL;

-- 015: organisation scoping (docs/security.md#organisation-scoping).
--
-- Alert rules become organisation-aware: a rule of the shipped file is global (organisation_id NULL, origin 'file',
-- read-only through the API); a rule written through the API belongs to the caller's organisation (origin 'api')
-- and, when it has the key of a file rule, replaces that rule for the organisation's devices only.
--
-- Dead letters are attributed to an organisation by their device, else by their topic's <city> level matched to
-- organisations.city_key through the slug the topics use (imports/registry.py city_slug, mirrored below).

ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_pkey;
ALTER TABLE alert_rules ADD COLUMN organisation_id integer REFERENCES organisations(id) ON DELETE CASCADE;
-- A rule written through the API before this migration applied to every device: each organisation gets its own copy
-- (version and time kept), which goes on replacing the file's rule of that key, if any, as the API edit did.
INSERT INTO alert_rules (key, definition, origin, version, updated_at, organisation_id)
SELECT r.key, r.definition, r.origin, r.version, r.updated_at, o.id
FROM alert_rules r CROSS JOIN organisations o WHERE r.origin = 'api' AND r.organisation_id IS NULL;
DELETE FROM alert_rules WHERE origin = 'api' AND organisation_id IS NULL;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_origin_owner
    CHECK ((origin = 'file') = (organisation_id IS NULL));
-- One global rule per key, and one per key and organisation (two partial indexes: ON CONFLICT can name either).
CREATE UNIQUE INDEX alert_rules_global_key ON alert_rules (key) WHERE organisation_id IS NULL;
CREATE UNIQUE INDEX alert_rules_org_key ON alert_rules (organisation_id, key) WHERE organisation_id IS NOT NULL;

-- imports/registry.py city_slug in SQL, for names already case-folded (city_key is lower-case): every run of
-- characters other than a-z and 0-9 becomes one '-', trimmed, at most 32 characters. (The Python function also
-- drops accents; a city_key with accented Latin letters would need them dropped here too.)
CREATE FUNCTION lccm_city_slug(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN nullif(rtrim(left(trim(BOTH '-' FROM regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 32), '-'), '');

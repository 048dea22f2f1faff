-- 012: who may call the API (local accounts, their sessions, API keys) and the audit log of every change.
-- Secrets are never stored: passwords as argon2id hashes, session tokens, CSRF tokens and API keys as SHA-256
-- digests (they are 256-bit random values, so a fast digest is enough: there is nothing to guess).

CREATE TABLE users (
    id               serial PRIMARY KEY,
    username         text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{0,63}$'),
    display_name     text NOT NULL CHECK (display_name <> ''),
    password_hash    text NOT NULL,
    organisation_id  integer NOT NULL REFERENCES organisations(id),
    roles            text[] NOT NULL CHECK (roles <@ ARRAY['viewer', 'facility_manager', 'environment_officer',
                                                            'carbon_officer', 'admin']),
    site_ids         integer[],  -- NULL: every site of the organisation
    disabled         boolean NOT NULL DEFAULT false,
    failed_logins    integer NOT NULL DEFAULT 0,  -- consecutive, reset by a good login
    locked_until     timestamptz,                 -- set after too many failed logins in a row
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id           bigserial PRIMARY KEY,
    token_sha256 text NOT NULL UNIQUE,
    csrf_sha256  text NOT NULL,
    user_id      integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);

CREATE TABLE api_keys (
    id               serial PRIMARY KEY,
    key_id           text NOT NULL UNIQUE,  -- the public part of the key (lccm_<key_id>_<secret>): names it in lists
    key_sha256       text NOT NULL UNIQUE,
    name             text NOT NULL CHECK (name <> ''),
    organisation_id  integer NOT NULL REFERENCES organisations(id),
    roles            text[] NOT NULL CHECK (roles <@ ARRAY['viewer', 'facility_manager', 'environment_officer',
                                                            'carbon_officer', 'admin']),
    site_ids         integer[],
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz,
    revoked_at       timestamptz
);

-- One row per change, written in the change's own transaction: a change that rolls back leaves no row, and a
-- committed change always has one.
CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    organisation_id  integer REFERENCES organisations(id),
    actor_subject    text NOT NULL,
    actor_name       text NOT NULL,
    action           text NOT NULL,  -- "PUT /organisations/{code}" or "lccm users add"
    target           text NOT NULL,
    before           jsonb,
    after            jsonb,
    request_id       text
);
CREATE INDEX audit_log_org_at_idx ON audit_log (organisation_id, at DESC, id DESC);

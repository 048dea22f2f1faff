-- 013: one MQTT credential per device (docs/security.md#mqtt-identity). The broker (mosquitto's dynamic-security
-- plugin) holds its own salted hash and checks the password; this table records which credential is current: an
-- argon2id hash of the secret (never the secret itself, which is shown once, in the 0600 file `lccm devices import`
-- writes) and when it was issued. A device without a row here has no credential yet: the next import creates one.
CREATE TABLE device_credentials (
    device_id   integer PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    secret_hash text NOT NULL CHECK (secret_hash LIKE '$argon2id$%'),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    rotations   integer NOT NULL DEFAULT 0 CHECK (rotations >= 0)
);

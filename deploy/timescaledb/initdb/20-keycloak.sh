#!/bin/sh
# Creates Keycloak's own role and database (the keycloak service of docker-compose.yml), beside lccm's.
#
# Run by the timescaledb image's entrypoint from /docker-entrypoint-initdb.d, once, when the data volume is empty
# (first start). KEYCLOAK_DB_PASSWORD is set on the timescaledb service from the same .env value as the keycloak
# service's KC_DB_PASSWORD.
set -eu

: "${KEYCLOAK_DB_PASSWORD:?KEYCLOAK_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$KEYCLOAK_DB_PASSWORD" <<'SQL'
CREATE ROLE keycloak LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE keycloak OWNER keycloak;
SQL

#!/bin/sh
# Creates the read-only role Grafana uses (deploy/grafana/provisioning/datasources/lccm.yaml).
#
# Run by the timescaledb image's entrypoint from /docker-entrypoint-initdb.d, once, when the data volume is empty
# (first start). Later password changes: ALTER ROLE ... PASSWORD by hand, then restart grafana.
# GRAFANA_DB_USER / GRAFANA_DB_PASSWORD are set on the timescaledb service from the same .env values as the
# grafana service's LCCM_GRAFANA_DB_USER / LCCM_GRAFANA_DB_PASSWORD.
set -eu

: "${GRAFANA_DB_USER:?GRAFANA_DB_USER is not set}"
: "${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD is not set}"

# psql variables (:'name' / :"name") quote the values, so any password characters are safe.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader="$GRAFANA_DB_USER" -v reader_password="$GRAFANA_DB_PASSWORD" -v owner="$POSTGRES_USER" \
    -v dbname="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
GRANT CONNECT ON DATABASE :"dbname" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
-- Tables created later by `lccm migrate` (it connects as the owner role): readable too.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
-- A dashboard query must never hold the database for long.
ALTER ROLE :"reader" SET statement_timeout = '60s';
ALTER ROLE :"reader" SET default_transaction_read_only = on;
SQL

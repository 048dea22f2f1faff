#!/bin/sh
# Starts one EMQX node of the scale-out stack (docker-compose.scale.yml: emqx1, emqx2, emqx3):
#   sh /opt/emqx/etc/lccm-entrypoint.sh /opt/emqx/etc/emqx.conf /usr/bin/docker-entrypoint.sh /opt/emqx/bin/emqx foreground
#
# Before handing over to the image's own start command (the arguments after the configuration file) it writes the
# REST API key that `lccm broker setup` and `lccm devices import|rotate|issue` use (LCCM_BROKER_ADMIN=emqx) into the
# file the configuration's api_key.bootstrap_file names, as EMQX reads it at every start: one line
# `key:secret:administrator` (v5.8.6 apps/emqx_management/src/emqx_mgmt_auth.erl, init_bootstrap_file/1;
# rel/i18n/emqx_mgmt_api_key_schema.hocon). The key and secret come from the environment (BOOTSTRAP_API_KEY,
# BOOTSTRAP_API_SECRET: compose hands it LCCM_EMQX_API_KEY and LCCM_EMQX_API_SECRET from .env, the values the lccm
# commands are given), so the two never drift apart; rewritten at every start, a changed secret applies at the next.
# NOT RUN WITH EMQX HERE (docs/scaling.md); tests/test_compose.py runs this script with a stand-in for the image's.
set -eu

conf="$1"
shift
bootstrap="$(sed -n 's/^api_key\.bootstrap_file[[:space:]]*=[[:space:]]*"\(.*\)"[[:space:]]*$/\1/p' "$conf")"
if [ -z "$bootstrap" ]; then
    echo "entrypoint: $conf sets no api_key.bootstrap_file" >&2
    exit 1
fi
key="${BOOTSTRAP_API_KEY:-}"
secret="${BOOTSTRAP_API_SECRET:-}"
if [ -z "$key" ] || [ -z "$secret" ]; then
    echo "entrypoint: BOOTSTRAP_API_KEY or BOOTSTRAP_API_SECRET is empty (LCCM_EMQX_API_KEY, LCCM_EMQX_API_SECRET in .env)" >&2
    exit 1
fi
# EMQX splits the line at colons: neither part may hold one (nor a newline).
case "$key$secret" in
    *[!A-Za-z0-9_.~-]*)
        echo "entrypoint: LCCM_EMQX_API_KEY and LCCM_EMQX_API_SECRET may hold only letters, digits and - _ . ~" >&2
        exit 1
        ;;
esac
umask 077
printf '%s:%s:administrator\n' "$key" "$secret" > "$bootstrap"
exec "$@"

#!/bin/sh
# Starts the broker of Low Carbon City Monitor (docker-compose.yml service `mosquitto`):
#   sh /mosquitto/config/entrypoint.sh /mosquitto/config/<mosquitto.conf | mosquitto-dev.conf>
#
# At the first start (no dynamic-security file yet) it creates the plugin's file with one client, the broker admin
# MQTT_ADMIN_USERNAME (default lccm-admin) with password MQTT_ADMIN_PASSWORD -- the same as LCCM_MQTT_ADMIN_PASSWORD
# of the lccm commands that manage identities (`lccm broker setup`, `lccm devices import|rotate`). Later starts
# keep the file (it holds every identity); change the admin password with mosquitto_ctrl (docs/security.md).
# The file's path is the configuration's plugin_opt_config_file, so this script works with any copy of the files.
set -eu

conf="$1"
dynsec="$(sed -n 's/^plugin_opt_config_file[[:space:]]*//p' "$conf")"

if [ -n "$dynsec" ] && [ ! -f "$dynsec" ]; then
    if [ -z "${MQTT_ADMIN_PASSWORD:-}" ]; then
        echo "entrypoint: MQTT_ADMIN_PASSWORD is empty: the broker's admin needs a password (LCCM_MQTT_ADMIN_PASSWORD in .env)" >&2
        exit 1
    fi
    mosquitto_ctrl dynsec init "$dynsec" "${MQTT_ADMIN_USERNAME:-lccm-admin}" "$MQTT_ADMIN_PASSWORD" >/dev/null
    if grep -q '^allow_anonymous[[:space:]]*true' "$conf"; then
        # The demo's anonymous broker (mosquitto-dev.conf): anonymous clients -- the simulator -- may publish and
        # subscribe anywhere, as without the plugin. Only the plugin's defaults change; roles still apply.
        sed -i -e 's/"publishClientSend":\([[:space:]]*\)false/"publishClientSend":\1true/' \
               -e 's/"subscribe":\([[:space:]]*\)false/"subscribe":\1true/' "$dynsec"
    fi
    # Started as root, mosquitto drops to the mosquitto user, which rewrites this file on every change.
    if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
        chown mosquitto:mosquitto "$dynsec"
    fi
    chmod 0600 "$dynsec"
    echo "entrypoint: created $dynsec with the broker admin ${MQTT_ADMIN_USERNAME:-lccm-admin}"
fi

exec mosquitto -c "$conf"

// Node-RED settings for the peer of benchmarks/ingest.py (`make bench-peers` installs Node-RED; the benchmark starts
// it). Headless: no editor, no admin API, no HTTP server at all, no credentials file (the flow holds no secret), no
// module installs. The benchmark hands over what the flow needs through the environment:
//   PGHOST, PGPORT, PGUSER, PGDATABASE  the benchmark's database (node-postgres reads them; the pool is shared by the
//                          flow through the global context)
//   LCCM_PEER_REGISTRY      a JSON file {"devices": {device_id: pk}, "keys": {plain key: [metric id, scale]}}
//   LCCM_PEER_MQTT_HOST, LCCM_PEER_MQTT_PORT, LCCM_PEER_TOPIC, LCCM_PEER_BATCH, LCCM_PEER_MAX_WAIT_MS (used in flows.json)
"use strict";
const fs = require("fs");
const { Pool } = require("pg");

const registry = JSON.parse(fs.readFileSync(process.env.LCCM_PEER_REGISTRY, "utf8"));
const pool = new Pool({
    max: Number(process.env.LCCM_PEER_POOL || 4),
    application_name: "lccm-bench-nodered",
});
pool.on("error", (err) => console.error("pool error:", err.message));

module.exports = {
    flowFile: process.env.LCCM_PEER_FLOWS || "flows.json",
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    logging: { console: { level: "info", metrics: false, audit: false } },  // info: "Connected to broker"
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    functionExternalModules: false,
    mqttReconnectTime: 1000,
    functionGlobalContext: {
        pool,
        registry,
        // CLOCK_MONOTONIC seconds, the clock of Python's time.monotonic() on Linux: the benchmark compares the two.
        monotonic: () => Number(process.hrtime.bigint()) / 1e9,
        // One JSON line per committed batch on stdout: what the benchmark counts (function nodes have no `process`).
        report: (obj) => process.stdout.write("LCCM-PEER " + JSON.stringify(obj) + "\n"),
    },
};

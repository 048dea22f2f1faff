"""Settings: one object, built once at start-up and passed down.

Every field can be set from the environment as ``LCCM_<FIELD>`` (upper case). Nothing in the project reads the
environment anywhere else, and no module keeps a settings instance at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lccm.engine.aqi_tables import (
    THAI_ABOVE_200_DEFAULT,
    THAI_COLOURS_HEX_DEFAULT,
    IncompletePolicy,
    Pollutant,
    Precision,
    RedBandRule,
    check_red_band_rules,
    thai_categories,
)
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits

if TYPE_CHECKING:
    from lccm.engine.aqi import AqiSettings


def _red_band_default() -> dict[Pollutant, RedBandRule]:
    return {cast(Pollutant, p): rule for p, rule in THAI_ABOVE_200_DEFAULT.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LCCM_", extra="ignore")

    # Run-time files (the ingest heartbeat; the demo's embedded servers).
    data_dir: Path = Path(".lccm")

    # PostgreSQL. Required by every command but `lccm demo`, which starts an embedded server (pgserver) under data_dir
    # when it is empty.
    database_url: str = Field(default="", repr=False)  # may carry a password: never in repr() or a log line
    # One pool per process: the API's requests, or the ingest's workers (updaters, alert evaluator, notification
    # dispatch, registry reloads, retention; the stream sink keeps a connection of its own). The ingest needs at most
    # five at once, the API up to its thread count; a worker or request that waits db_pool_timeout_s for one fails.
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=8, ge=1)
    db_pool_timeout_s: float = Field(default=10.0, gt=0)

    # Supervised workers (lccm/workers.py): a failed step is retried after base * 2**(n-1) seconds (half fixed, half
    # random), at most the cap; a worker failing without a break for longer than worker_unhealthy_after_s makes
    # `lccm healthcheck --ingest` (and readiness) fail until one of its steps succeeds again.
    worker_backoff_base_s: float = Field(default=0.5, gt=0)
    worker_backoff_cap_s: float = Field(default=15.0, gt=0)
    worker_unhealthy_after_s: float = Field(default=60.0, gt=0)

    # Device partitions (docs/partitions.md): derived data (energy, samples, lamps, AQI) is split into this many
    # partitions by device (primary key mod partitions), shared by the ingest processes through leases in
    # PostgreSQL. The count is recorded in the database at the first start and must be the same on every process
    # (another count is refused at start-up). A worker's partitions are taken over partition_lease_s after it dies.
    partitions: int = Field(default=64, ge=1, le=4096)
    partition_lease_s: float = Field(default=10.0, ge=0.5)
    # What one `lccm ingest` process runs (docs/partitions.md#roles): all (one process does everything), stream
    # (MQTT -> committed readings, with the alert evaluator its commit hook feeds) or derived (no MQTT: leases,
    # updaters, notification dispatch). Stream and derived processes scale apart, each on its own cores.
    ingest_role: str = Field(default="all", pattern="^(all|stream|derived)$")

    # MQTT. Required by `lccm ingest` and `lccm simulate`; `lccm demo` starts an embedded broker (a mosquitto child
    # process if installed, else amqtt) when it is empty.
    mqtt_host: str = ""
    mqtt_port: int = 1883
    # The ingest's broker identity (docs/security.md#mqtt-identity): the user lccm-ingest, shared by the ingest
    # workers, each with its own client id (lccm-ingest-1, lccm-ingest-2, ...; its alert publisher adds -alerts).
    # User names and client ids starting with "lccm" are reserved for the product's services.
    mqtt_username: str = ""
    mqtt_password: SecretStr = SecretStr("")
    mqtt_client_id: str = "lccm-ingest-1"
    # The broker's dynamic-security admin: `lccm broker setup` and `lccm devices import|rotate` create and change
    # broker identities with it (deploy/mosquitto/entrypoint.sh creates it at the broker's first start). Only those
    # commands need it; never give it to the ingest or the API.
    mqtt_admin_username: str = "lccm-admin"
    mqtt_admin_password: SecretStr = SecretStr("")
    # A CA certificate (PEM) to verify the broker with: the admin commands then speak TLS (e.g. to port 8883).
    mqtt_admin_tls_ca_file: Path | None = None
    # Which broker's identity store those commands write (docs/scaling.md#identities-on-emqx): mosquitto's
    # dynamic-security plugin through its control API (the mqtt_admin_* settings above), or EMQX's built-in database
    # through its REST API at emqx_api_url (the dashboard listener, e.g. http://emqx:18083) with an API key and secret
    # from EMQX's api_key.bootstrap_file (deploy/emqx/emqx.conf). Only those commands read them.
    broker_admin: Literal["mosquitto", "emqx"] = "mosquitto"
    emqx_api_url: str = ""
    emqx_api_key: SecretStr = SecretStr("")
    emqx_api_secret: SecretStr = SecretStr("")
    # Empty (one ingest worker): a plain subscription, which mosquitto keeps across a restart. Several workers set
    # the same group (e.g. lccm-ingest) to share the load, but mosquitto drops a shared subscription when it restarts:
    # what is published before the workers resubscribe is lost (docs/durability.md).
    mqtt_share_group: str = ""
    mqtt_topic_root: str = "lccm/v1"
    # Persistent session: the broker keeps our subscription and queued QoS 1 messages this long while we are away.
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    # Upper bound on unacknowledged messages the broker may push to us (we ack only after the DB commit).
    mqtt_receive_maximum: int = 20_000
    # The MQTT keep-alive of the ingest's connection: the broker drops it after 1.5 times this without a packet.
    mqtt_keepalive_s: int = Field(default=30, ge=1, le=65_535)
    # Force MQTT 3.1.1 (for brokers that speak nothing newer); otherwise 5 is tried first, then 3.1.1.
    mqtt_protocol: str = Field(default="auto", pattern="^(auto|5|3.1.1)$")

    # stream/: a batch is flushed when it holds this many readings or its oldest message is this old.
    batch_max_readings: int = 20_000
    batch_max_wait_s: float = 0.05
    # Batches handed from the stream thread to its writer (a second worker) and not committed yet: the stream
    # decodes and deduplicates the next batch while the database stores these (0: the stream thread writes itself).
    # Two, so that neither waits for the other when a batch's decoding or writing runs long (the GIL, a slow commit):
    # the stream alone stored 0.50-0.67 of the bare COPY against 0.42-0.49 with one; four did no better
    # (benchmarks/README.md#two-batches-in-flight).
    batches_in_flight: int = Field(default=2, ge=0)
    # Memory budgets of one ingest process (docs/reference.md#memory-budgets), in bytes:
    # - inbox_bytes: messages received and not yet taken by the stream loop (payload + topic + 256 per message);
    #   when full, the MQTT thread waits before it reads more (backpressure; nothing is dropped or acked early);
    # - dedup_cache_bytes: readings remembered across batches for in-memory dedup, 32 bytes each (32 MiB: about
    #   1 M readings, over an hour of 100,000 devices with two metrics at 15 minutes); the database's key stays
    #   the authority, so a smaller cache only costs database work;
    # - alert_history_bytes: per device an index rule watches (an AQ station), the alert evaluator's recent
    #   (event time, watermark) pairs of its batches, 16 bytes each (64 KiB: 4,096 batches, two weeks of 5-minute
    #   batches), so an index computed late is judged by when its readings came; pairs the index rules have passed
    #   are dropped as they go, so this is a cap, not a size. Devices no index rule watches keep none.
    # The defaults keep one ingest process with 100,000 devices under 500 MB (benchmarks/memory.py; 64, 64 and 32 MiB
    # before: 571 MB).
    inbox_bytes: int = Field(default=16 * 2**20, ge=2**20)
    dedup_cache_bytes: int = Field(default=32 * 2**20, ge=0)
    alert_history_bytes: int = Field(default=64 * 2**10, ge=256)
    # - energy_cell_budget: buckets x meters per energy-engine call; about 80 bytes a cell of dense arrays at once
    #   (1 M: ~80 MB; the engine's results do not depend on it, a backlog is only cut in more calls).
    energy_cell_budget: int = Field(default=1_000_000, ge=10_000)

    # Late data: a reading that arrives more than this long after its event time is stored, but the live updaters
    # do not rewrite closed periods for it; it is listed (GET /late-data) until `lccm recompute` covers it.
    late_horizon_s: int = Field(default=7 * 86_400, gt=0)

    # Message contract limits (docs/contract.md).
    max_payload_bytes: int = 256 * 1024
    max_readings_per_message: int = 5_000
    future_tolerance_s: float = 300.0

    # Store layout: retention and compression (TimescaleDB policies; plain PostgreSQL prune job).
    retention_days: int = 3 * 365
    compress_after_days: int = 7
    # Planner statistics (docs/scaling.md#planner-statistics): a process that runs the derived-data updaters looks
    # this often for tables autovacuum would analyze now (its own threshold and scale factor) and analyzes them, at
    # most once per analyze_min_interval_s per table; 0 turns it off (leave it to autovacuum).
    analyze_check_s: float = Field(default=5.0, ge=0)
    analyze_min_interval_s: float = Field(default=60.0, ge=0)

    # Emissions: the calendar year whose factors give the like-for-like ("base-year factor") figures. It must be a
    # year in which no factor changes (2025: TGO grid 0.4999 all year).
    emission_base_year: int = 2025

    # Comparisons with the base year (reports/coverage.py, docs/reference.md#coverage-of-comparisons): the least share
    # of the period's data, weighted by the base year's emissions, below which the % change, the year-end projection,
    # a target's value and on-track verdict and a KPI's full-year value are withheld (null, with the reason); the
    # like-for-like figures over the covered time are still given. A setting, not a published figure.
    comparison_min_coverage: float = Field(default=0.9, ge=0, le=1)

    # Air quality (engine/aqi.py; docs/reference.md#air-quality). Where PCD publishes no rule, these are the choices:
    # - completeness: least share of a window's hours with data for a complete index average (75 % follows US EPA's
    #   daily-average practice: docs/reference.md#averaging-and-completeness);
    # - thai_incomplete: below it, a Thai sub-index is "withhold"-en or computed from the hours present ("partial");
    #   either way its row says so (status, reason, coverage);
    # - measured_within_h: a pollutant with data at a station within this many hours counts as measured there;
    #   while its sub-index is withheld, the overall index names it as missing;
    # - thai_precision, thai_above_200 (a red-band rule per pollutant, JSON: {"pm25": {"kind": "cap"}}) and
    #   thai_colours_hex (five #RRGGBB codes, JSON list) are UNCONFIRMED values of the Thai table
    #   (docs/reference.md#thai-aqi); the API and `lccm dashboards write|push` take the colours from here;
    # - epa_o3_1h_always and epa_above_500: the options EPA's table leaves (docs/reference.md#us-epa-aqi).
    aqi_completeness: float = Field(default=0.75, gt=0, le=1)
    aqi_thai_incomplete: IncompletePolicy = "withhold"
    aqi_measured_within_h: int = Field(default=168, ge=24)
    aqi_thai_precision: Precision = "round_half_up"
    aqi_thai_above_200: dict[Pollutant, RedBandRule] = Field(default_factory=_red_band_default)
    aqi_thai_colours_hex: tuple[str, str, str, str, str] = THAI_COLOURS_HEX_DEFAULT
    aqi_epa_o3_1h_always: bool = False
    aqi_epa_above_500: Literal["extend", "cap"] = "extend"

    # Energy from registers: the plausibility bound of a meter with no rated power and no history of its own or its
    # site's (a new meter at a new site), per register metric, and how many days of history a learned bound is read
    # from. Not published figures: docs/reference.md#plausibility-bound-of-a-register.
    meter_default_bound_kw: float = Field(default=1000.0, gt=0)
    meter_default_bound_lph: float = Field(default=100.0, gt=0)
    meter_bound_history_days: int = Field(default=28, ge=1, le=366)

    # Streetlights: minutes around sunrise and sunset that count as neither day nor night (photocells switch near
    # civil twilight, so burning then is neither day burning nor an outage). A setting, not a published figure.
    streetlight_grace_min: int = Field(default=15, ge=0, le=60)

    # Alerts (engine/alerts.py, stream/alerts.py). The rule file is synced into the database at start-up; empty
    # means the shipped lccm/data/alert-rules.yaml.
    alerts_enabled: bool = True
    alert_rules_file: Path | None = None
    # Lateness clock: "wall" (production: an alert more than alert_late_after_s older than the wall clock at receipt
    # is recorded as late and not paged) or "event" (the city's newest event time: replays of the past page as if
    # live; simulations and benchmarks).
    alert_clock: str = Field(default="wall", pattern="^(wall|event)$")
    alert_late_after_s: float = Field(default=900.0, gt=0)
    # How far back the evaluator looks: after a restart, series without evaluation state are evaluated from this far
    # behind the newest data; readings that arrive behind newer ones of their series are evaluated (late alerts) up to
    # this far behind them.
    alert_catchup_s: float = Field(default=7 * 86400.0, ge=0)

    # Notifications (notify/, lccm/alerts.py). Recipients (who, which channels, language, quiet hours, daily
    # digest, filters) come from a YAML file, deploy/notify-recipients.example.yaml; empty = no people (alerts are
    # still recorded, served by the API and, with notify_mqtt_all, published on the MQTT alert topic).
    notify_recipients_file: Path | None = None
    notify_mqtt_all: bool = True  # every on-time alert change to {root}/{city}/alerts/{severity}
    notify_bypass_severity: str = Field(default="critical", pattern="^(info|warning|critical)$")  # ignores quiet hours
    notify_tick_s: float = Field(default=30.0, gt=0)  # how often held digests and summaries are checked
    # A delivery that failed (after its channel's own retries) is sent again this long after its last failure, up to
    # notify_redeliver_max failures per notification and address (the defaults: every 5 minutes for an hour).
    notify_redeliver_after_s: float = Field(default=300.0, gt=0)
    notify_redeliver_max: int = Field(default=12, ge=1)
    notify_smtp_host: str = ""  # e-mail; needed only when a recipient has an e-mail address
    notify_smtp_port: int = 587
    notify_smtp_security: str = Field(default="starttls", pattern="^(plain|starttls|tls)$")
    notify_smtp_sender: str = ""
    notify_smtp_username: str = ""
    notify_smtp_password: SecretStr = SecretStr("")
    notify_line_token: SecretStr = SecretStr("")  # LINE Messaging API channel access token
    notify_line_base_url: str = "https://api.line.me"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Request limits (api/limits.py), refused with 413 before anything is parsed: a JSON body (the largest real one,
    # a year's device mapping of a 10,000-device city, is about 0.6 MB) and an uploaded file (CSV, XLSX or a
    # multipart form: a registry of 100,000 devices is about 15 MB of CSV).
    api_max_json_bytes: int = Field(default=1024 * 1024, gt=0)
    api_max_upload_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    # /metrics of the API: with a token, only a scraper sending `Authorization: Bearer <token>` reads it; without
    # one, anyone who reaches the API (keep it on an internal network then).
    metrics_token: SecretStr | None = None
    # Files people hand in (imports/limits.py), for the API and the CLI alike. An XLSX is a ZIP archive: it may unpack
    # to at most import_max_unpacked_bytes, and the grid a reader walks (rows x columns of every worksheet, empty
    # cells included) may hold at most import_max_cells; both are checked before the workbook is loaded. A CSV may
    # hold at most import_max_cells cells. A refused file lists at most import_max_errors_listed row errors (in the
    # 422 answer and in the import log) with the count of all of them.
    import_max_unpacked_bytes: int = Field(default=DEFAULT_LIMITS.max_unpacked_bytes, gt=0)
    import_max_cells: int = Field(default=DEFAULT_LIMITS.max_cells, gt=0)
    import_max_errors_listed: int = Field(default=DEFAULT_LIMITS.max_errors_listed, gt=0)

    # Identity (api/auth/, docs/security.md). OIDC bearer tokens: the issuer (its `iss`, exactly), the audience
    # the API's client is given (`aud`), and the JWKS address (default: jwks_uri of the issuer's
    # /.well-known/openid-configuration, fetched at the first token). Claim names are dotted paths into the token:
    # roles (Keycloak's realm roles by default), the organisation code and the site codes. No issuer: no OIDC.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_roles_claim: str = "realm_access.roles"
    oidc_org_claim: str = "lccm_org"
    oidc_sites_claim: str = "lccm_sites"
    oidc_client_secret: SecretStr | None = None  # for a confidential client of the later web pages; unused by the API
    # Local accounts: a session lasts session_ttl_s from login; its cookie is Secure unless session_cookie_secure is
    # off (plain-HTTP demos). login_lockout_after failed logins in a row lock the account for login_lockout_s.
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    session_cookie_secure: bool = True
    login_lockout_after: int = Field(default=5, ge=1)
    login_lockout_s: float = Field(default=900.0, ge=0)
    # The citizens' air-quality feed: GET /aqi/current and /aqi/stations.geojson without credentials, every
    # organisation's stations. Off by default.
    public_aqi: bool = False
    # Base tiles under the web pages' air-quality map (/app/aq), for production: an https URL template of Web
    # Mercator raster tiles with {z}, {x} and {y} (e.g. a municipality's own tile server), and the attribution its
    # licence asks for. Unset, the map draws the stations over the shipped province outline and loads nothing.
    web_map_tiles_url: str | None = Field(default=None, pattern=r"^https://[^\s\"'<>]*\{z\}[^\s\"'<>]*$")
    web_map_tiles_attribution: str = ""
    # The live feed (GET /live/events, api/live.py): one poller per API process reads changes every live_poll_s; a
    # process serves at most live_max_subscribers streams (one more: 503); a client that falls live_queue_events
    # events behind is disconnected; the last live_replay_events alert events are kept for reconnects with
    # Last-Event-ID; a comment line goes out after live_heartbeat_s without events; a stream ends after
    # live_stream_max_s (browsers reconnect by themselves), which spreads long-lived clients over restarted processes.
    live_poll_s: float = Field(default=5.0, gt=0)
    live_max_subscribers: int = Field(default=200, ge=1)
    live_queue_events: int = Field(default=1000, ge=1)
    live_replay_events: int = Field(default=1000, ge=0)
    live_heartbeat_s: float = Field(default=15.0, gt=0)
    live_stream_max_s: float = Field(default=3600.0, gt=0)

    # Logs (lccm/logs.py): "text" for a terminal, "json" (one object per line: time, level, logger, message, stage,
    # request_id, exception) for a log collector. The level applies to every command; `-v` lowers it to DEBUG.
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = Field(default="INFO", pattern="(?i)^(debug|info|warning|error|critical)$")

    # The ingest process's monitoring server (lccm/monitoring.py): /metrics (Prometheus), /health/live and
    # /health/ready. Loopback by default; 0.0.0.0 inside a container network for Prometheus. Port 0 = no server.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=0, le=65535)

    # City (the demo and the simulator).
    city_file: Path | None = None
    # No time-zone setting: the product's calendar rules (October fiscal year, Buddhist Era years, Thai public
    # holidays) are Thai, so the zone is lccm.engine.timebase.BANGKOK (docs/reference.md#city-time-zone).

    @field_validator("web_map_tiles_url", mode="before")
    @classmethod
    def _no_tiles_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # LCCM_WEB_MAP_TILES_URL= (compose's ${...:-}) means no tiles

    @field_validator("aqi_thai_colours_hex")
    @classmethod
    def _colour_codes(cls, value: tuple[str, str, str, str, str]) -> tuple[str, str, str, str, str]:
        thai_categories(value)  # refuses anything but five #RRGGBB codes, naming the bad one
        return value

    @field_validator("aqi_thai_above_200")
    @classmethod
    def _red_band_rules(cls, value: dict[Pollutant, RedBandRule]) -> dict[Pollutant, RedBandRule]:
        check_red_band_rules({str(p): rule for p, rule in value.items()})
        return value

    def aqi_settings(self) -> AqiSettings:
        """The AQI engine's settings from these fields (what the AQI updater and `lccm recompute` use)."""
        from lccm.engine.aqi import AqiSettings  # the engine (numba) only for the commands that compute indices

        return AqiSettings(
            completeness=self.aqi_completeness,
            thai_incomplete=self.aqi_thai_incomplete,
            measured_within_h=self.aqi_measured_within_h,
            thai_precision=self.aqi_thai_precision,
            thai_above_200={str(p): rule for p, rule in self.aqi_thai_above_200.items()},
            thai_colours_hex=self.aqi_thai_colours_hex,
            epa_o3_1h_always=self.aqi_epa_o3_1h_always,
            epa_above_500=self.aqi_epa_above_500,
        )

    def input_limits(self) -> InputLimits:
        """The bounds on files people hand in, as the importers take them."""
        return InputLimits(
            max_unpacked_bytes=self.import_max_unpacked_bytes,
            max_cells=self.import_max_cells,
            max_errors_listed=self.import_max_errors_listed,
        )

    @field_validator("alert_rules_file", "notify_recipients_file", "city_file", mode="before")
    @classmethod
    def _empty_file_is_none(cls, value: object) -> object:
        # docker-compose.yml passes an unset optional file as "" (`${VAR:-}`): that means no file, not Path("."),
        # the current folder (which made `lccm ingest` fail at start-up in the deployed image).
        return None if value == "" else value

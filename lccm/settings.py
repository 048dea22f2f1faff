"""Settings: one object, built once at start-up and passed down.

Every field can be set from the environment as ``LCCM_<FIELD>`` (upper case). Nothing in the project reads the
environment anywhere else, and no module keeps a settings instance at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LCCM_", extra="ignore")

    # Run-time files (the ingest heartbeat; the demo's embedded servers).
    data_dir: Path = Path(".lccm")

    # PostgreSQL. Required by every command but `lccm demo`, which starts an embedded server (pgserver) under data_dir
    # when it is empty.
    database_url: str = ""
    db_pool_min: int = 1
    db_pool_max: int = 8

    # MQTT. Required by `lccm ingest` and `lccm simulate`; `lccm demo` starts an embedded broker (a mosquitto child
    # process if installed, else amqtt) when it is empty.
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_client_id: str = "lccm-ingest-1"
    mqtt_share_group: str = "lccm-ingest"
    mqtt_topic_root: str = "lccm/v1"
    # Persistent session: the broker keeps our subscription and queued QoS 1 messages this long while we are away.
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    # Upper bound on unacknowledged messages the broker may push to us (we ack only after the DB commit).
    mqtt_receive_maximum: int = 20_000
    # Force MQTT 3.1.1 (for brokers that speak nothing newer); otherwise 5 is tried first, then 3.1.1.
    mqtt_protocol: str = Field(default="auto", pattern="^(auto|5|3.1.1)$")

    # stream/: a batch is flushed when it holds this many readings or its oldest message is this old.
    batch_max_readings: int = 20_000
    batch_max_wait_s: float = 0.05
    # Keys remembered across batches for in-memory dedup (the database stays the authority).
    dedup_window_keys: int = 2_000_000

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

    # Emissions: the calendar year whose factors give the like-for-like ("base-year factor") figures. It must be a
    # year in which no factor changes (2025: TGO grid 0.4999 all year).
    emission_base_year: int = 2025

    # Air quality: least share of a window's hours with data for an index average (PCD publishes no rule of its own;
    # 75 % follows US EPA's daily-average practice: docs/reference.md#averaging-and-completeness).
    aqi_completeness: float = Field(default=0.75, gt=0, le=1)

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
    # After a restart, series without evaluation state are evaluated from this far behind the newest data.
    alert_catchup_s: float = Field(default=7 * 86400.0, ge=0)

    # Notifications (notify/, lccm/notifications.py). Recipients (who, which channels, language, quiet hours, daily
    # digest, filters) come from a YAML file, deploy/notify-recipients.example.yaml; empty = no people (alerts are
    # still recorded, served by the API and, with notify_mqtt_all, published on the MQTT alert topic).
    notify_recipients_file: Path | None = None
    notify_mqtt_all: bool = True  # every on-time alert change to {root}/{city}/alerts/{severity}
    notify_bypass_severity: str = Field(default="critical", pattern="^(info|warning|critical)$")  # ignores quiet hours
    notify_tick_s: float = Field(default=30.0, gt=0)  # how often held digests and summaries are checked
    notify_smtp_host: str = ""  # e-mail; needed only when a recipient has an e-mail address
    notify_smtp_port: int = 587
    notify_smtp_security: str = Field(default="starttls", pattern="^(plain|starttls|tls)$")
    notify_smtp_sender: str = ""
    notify_smtp_username: str = ""
    notify_smtp_password: str = Field(default="", repr=False)
    notify_line_token: str = Field(default="", repr=False)  # LINE Messaging API channel access token
    notify_line_base_url: str = "https://api.line.me"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000

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

    @field_validator("alert_rules_file", "notify_recipients_file", "city_file", mode="before")
    @classmethod
    def _empty_file_is_none(cls, value: object) -> object:
        # docker-compose.yml passes an unset optional file as "" (`${VAR:-}`): that means no file, not Path("."),
        # the current folder (which made `lccm ingest` fail at start-up in the deployed image).
        return None if value == "" else value

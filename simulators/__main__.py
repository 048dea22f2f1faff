"""`python -m simulators`: run the virtual city against a broker (a thin, dependency-free CLI).

Examples:
    python -m simulators --registry devices.csv --registry-only
    python -m simulators --start 2026-03-01T00:00:00+07:00 --end 2026-03-02T00:00:00+07:00 --faults
    python -m simulators --speed 1440 --duration 60 --truth truth.jsonl
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from lccm.simulators.city import load_city
from lccm.simulators.run import main_simulate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators", description=__doc__.splitlines()[0])
    p.add_argument("--city", default=None, help="city YAML (default: the packaged Lampang city)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="ISO time with offset; default now")
    p.add_argument("--end", help="ISO time with offset (exclusive)")
    p.add_argument("--speed", type=float, help="1 = real time, 1440 = a day per minute; omit to replay flat out")
    p.add_argument("--duration", type=float, help="stop after this many wall-clock seconds")
    p.add_argument("--faults", action="store_true", help="enable the city's fault mix")
    p.add_argument("--device", action="append", help="device id pattern (fnmatch); repeatable")
    p.add_argument("--max-devices", type=int)
    p.add_argument("--clients", type=int, default=2, help="publisher connections")
    p.add_argument("--truth", help="write the ground truth here (JSON lines)")
    p.add_argument("--registry", help="write the device registry CSV here")
    p.add_argument("--registry-only", action="store_true", help="write the registry CSV and exit")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.registry_only:
        if not args.registry:
            print("--registry-only needs --registry PATH", file=sys.stderr)
            return 2
        rows = load_city(args.city).devices_csv(args.registry)
        print(f"wrote {rows} devices to {args.registry}")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def progress(info: dict[str, Any]) -> None:
        if not args.quiet:
            print(f"sim {info['sim_now_s']:.0f}  published {info['published']}  acked {info['acked']}", file=sys.stderr)

    summary = main_simulate(
        args.city,
        host=args.host,
        port=args.port,
        protocol=args.protocol,
        seed=args.seed,
        start=args.start,
        end=args.end,
        speed=args.speed,
        duration_s=args.duration,
        faults=args.faults,
        devices=args.device,
        max_devices=args.max_devices,
        truth_path=args.truth,
        registry_csv=args.registry,
        clients=args.clients,
        progress=progress,
        stop_event=stop,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Refresh the Swagger UI files that /docs serves (api/static/swagger-ui/) from the npm package swagger-ui-dist.

The API never loads anything from a CDN: the page, its script, style sheet and icon are package data of the wheel
(pyproject's [tool.setuptools.package-data]), served by api/docs.py. This script is the only thing that fetches
them, with the ordinary npm client (``npm pack``), at a pinned version, and records what it took in
``VENDORED.json``: package, version, the registry's integrity hash of the tarball, licence, and each file's SHA-256
(tests/test_api_docs.py checks the files against it). Run from the repository root, then commit the folder:

    .venv/bin/python -m deploy.vendor_swagger_ui [--version 5.36.0]

swagger-ui-dist is SmartBear's own build of Swagger UI (Apache-2.0), the package FastAPI's default page loads from
a CDN; the files are taken byte for byte, with the licence, the notice and the bundle's third-party licences.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "swagger-ui-dist"
VERSION = "5.36.0"
TARGET = Path(__file__).resolve().parent.parent / "api" / "static" / "swagger-ui"
# What /docs needs (api/docs.py ASSETS), and the licence texts that go with it.
FILES = (
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "favicon-32x32.png",
    "LICENSE",
    "NOTICE",
    "swagger-ui-bundle.js.LICENSE.txt",
)


def _pack(version: str, folder: Path) -> tuple[Path, str]:
    """Download the package's tarball with npm; returns it and the registry's integrity string."""
    out = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--json", "--pack-destination", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]
    return folder / info["filename"], str(info["integrity"])


def _verify(tarball: Path, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{tarball.name}: integrity mismatch ({integrity} expected)")


def vendor(version: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        tarball, integrity = _pack(version, Path(tmp))
        _verify(tarball, integrity)
        TARGET.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            manifest = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
            if manifest["version"] != version:
                raise SystemExit(f"npm gave {manifest['version']}, not {version}")
            hashes: dict[str, str] = {}
            for name in FILES:
                member = tar.extractfile(f"package/{name}")
                assert member is not None, name
                data = member.read()
                (TARGET / name).write_bytes(data)
                hashes[name] = hashlib.sha256(data).hexdigest()
    record: dict[str, object] = {
        "package": PACKAGE,
        "version": version,
        "registry": "npm",
        "integrity": integrity,
        "license": manifest["license"],
        "source": "https://github.com/swagger-api/swagger-ui",
        "files": hashes,
    }
    (TARGET / "VENDORED.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION)
    record = vendor(parser.parse_args().version)
    print(f"{record['package']} {record['version']} ({record['license']}) -> {TARGET}")


if __name__ == "__main__":
    main()

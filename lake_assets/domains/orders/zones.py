"""Where the orders live in the lake (the seed's S3 folders), and how landing sets are named."""
from __future__ import annotations

import datetime as dt
import json

from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join

LANDING = "bronze/landing/orders"  # one folder per extraction run, removed once archived
ARCHIVE = "archive/orders"  # the landing sets, unchanged: the source of truth
SILVER = "silver/staging/orders"  # current state of each valid order, by order_date
DISCARDED = "discarded/orders"  # invalid rows with their reasons, one file per landing set

#: Written last into a landing folder: its presence commits the set (the sensor's trigger).
MANIFEST = "_manifest.json"
SET_KEY = "extracted_at"


def set_name(extracted_at: dt.datetime) -> str:
    """``extracted_at=2024-03-01T101500.123456Z``: sorts by time, no ':' (Hadoop paths reject it)."""
    return f"{SET_KEY}={extracted_at.astimezone(dt.timezone.utc).strftime('%Y-%m-%dT%H%M%S.%fZ')}"


def landing_folder(name: str) -> str:
    return join(LANDING, name)


def archive_folder(name: str) -> str:
    return join(ARCHIVE, name)


def discarded_file(name: str) -> str:
    from lake_assets.domains.orders.tables import DISCARDED as table

    return table.file_path(name)


def silver_file(day: str) -> str:
    from lake_assets.domains.orders.tables import SILVER as table

    return table.file_path(f"order_date={day}")


def committed_sets(storage: LakeStorage, zone: str = LANDING) -> list[str]:
    """Names of the landing sets whose manifest is written, oldest first."""
    out = []
    for f in storage.list_files(zone, hidden=True):
        parts = f.path[len(zone) + 1:].split("/")
        if len(parts) == 2 and parts[1] == MANIFEST and parts[0].startswith(f"{SET_KEY}="):
            out.append(parts[0])
    return sorted(out)


def set_location(storage: LakeStorage, name: str) -> str | None:
    """The folder holding a committed set: the landing zone until archived, then the archive."""
    for folder in (landing_folder(name), archive_folder(name)):
        if storage.is_file(join(folder, MANIFEST)):
            return folder
    return None


def read_manifest(storage: LakeStorage, folder: str) -> dict:
    return json.loads(storage.read_text(join(folder, MANIFEST)))

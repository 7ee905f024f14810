"""Zone IDs of every commercial region EKS runs in (infra/data/zone_ids.json, from AWS's Availability Zones table by
tools/generate_zone_ids.py): what config checks a pool's zone against and what the offline engine answers with."""

from __future__ import annotations

from infra.catalog.data import load_data

REGION_ZONE_IDS: dict[str, list[str]] = load_data("zone_ids")["regions"]

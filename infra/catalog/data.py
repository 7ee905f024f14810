"""The one loader of infra/data/*.json: facts with their sources, kept out of Python."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@functools.cache
def load_data(name: str) -> Any:
    """The parsed `infra/data/<name>.json` (read once per process; callers must not mutate it)."""
    return json.loads((DATA_DIR / f"{name}.json").read_text(encoding="utf-8"))

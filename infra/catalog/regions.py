"""The AWS regions the installed AWS SDK knows: botocore's own partition data, not a list written here.

botocore 1.44.5 loads `partitions` from `botocore/data/partitions.json` (loaders.py: `BUILTIN_DATA_PATH =
os.path.join(BOTOCORE_ROOT, 'data')`; client.py: `self._loader.load_data('partitions')`), and its endpoint rules
resolve a region's partition from that file (endpoint_provider.py `aws_partition`). Each partition lists its regions
under `regions`; pseudo-regions like `aws-global` are not region names and are left out. The file
is read as JSON, without importing botocore (its import takes a noticeable part of a second).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

# A region name (us-west-2, eusc-de-east-1); `aws-global` and its like are endpoint names, not regions.
_REGION_NAME = re.compile(r"^[a-z]+(?:-[a-z]+)+-[0-9]+$")


def partitions_file() -> Path | None:
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "partitions.json"
    return path if path.is_file() else None


@functools.cache
def sdk_regions() -> dict[str, str]:
    """Region name -> partition id (`aws`, `aws-cn`, ...), in the file's order. Empty when botocore is not installed
    (it is a dependency: boto3)."""
    path = partitions_file()
    if path is None:
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    return {
        region: partition["id"]
        for partition in document.get("partitions", [])
        for region in partition.get("regions", {})
        if _REGION_NAME.match(region)
    }


def sdk_description() -> str:
    """Which data the region list comes from, for messages: `botocore 1.44.5 (botocore/data/partitions.json)`."""
    try:
        version = importlib.metadata.version("botocore")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    return f"botocore {version} (botocore/data/partitions.json)"

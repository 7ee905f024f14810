"""Keys of the image pull path (infra/image_cache.py): the ECR pull-through cache and its opt-in credentialed
registries."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from infra.catalog.data import load_data
from infra.config.convert import Bool, Section, StringMap, key
from infra.config.errors import item_error

# ECR pull-through cache: ECR prefix -> upstream registry and whether it needs a Secrets Manager secret.
_IMAGE_CACHE = load_data("image_cache")
IMAGE_CACHE_REGISTRIES: dict[str, dict[str, Any]] = _IMAGE_CACHE["registries"]
IMAGE_CACHE_SECRET_PREFIX: str = _IMAGE_CACHE["secret_name_prefix"]
CREDENTIALED_REGISTRIES: tuple[str, ...] = tuple(p for p, r in IMAGE_CACHE_REGISTRIES.items() if r["credentials"])
# Secrets Manager secret names: 1-512 of letters, digits and /_+=.@- (ECR requires the ecr-pullthroughcache/ prefix).
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")


class ImageCacheKeys(Section):
    image_cache: Bool = key(True, "ECR pull-through cache rules for public.ecr.aws, registry.k8s.io and quay.io.")
    image_cache_credentials: StringMap = key(
        {}, "Opt-in cached registries that need credentials (docker-hub, ghcr) -> name of their Secrets Manager secret."
    )

    @field_validator("image_cache_credentials")
    @classmethod
    def _cache_credentials(cls, v: dict[str, str], info: Any) -> dict[str, str]:
        for prefix, secret in v.items():
            if prefix not in CREDENTIALED_REGISTRIES:
                why = "needs no credentials: it is cached by default" if prefix in IMAGE_CACHE_REGISTRIES else "unknown"
                allowed = ", ".join(CREDENTIALED_REGISTRIES)
                raise item_error(prefix, secret, f"{why}; registries that need one: {allowed}")
            if (
                not isinstance(secret, str)
                or not secret.startswith(IMAGE_CACHE_SECRET_PREFIX)
                or secret == IMAGE_CACHE_SECRET_PREFIX
                or not _SECRET_NAME.match(secret)
            ):
                raise item_error(
                    prefix,
                    secret,
                    f"is not a Secrets Manager secret name starting with {IMAGE_CACHE_SECRET_PREFIX} "
                    "(ECR requires it; letters, digits and /_+=.@- only), like "
                    f"{IMAGE_CACHE_SECRET_PREFIX}{prefix}",
                )
        if v and info.data.get("image_cache") is False:
            raise ValueError("has no effect while imageCache is false; remove it or set imageCache true")
        return v

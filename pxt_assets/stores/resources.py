"""Dagster resources as the stores' clients: `pxt.definitions(..., resources={"s3": S3Resource(...),
"gcs": GCSResource(...), "azure_blob": AzureBlobStorageResource(...)})`.

A resource given there is what every step, sensor and lifecycle call of this process uses for that
provider: its endpoint, credentials and region (S3), project (GCS), account URL and credential (Azure).
`EnvVar` fields are read from the environment when the resource is registered (as Dagster resolves them
when it initializes a resource). Without resources, the stores build their clients from config.toml and
the environment, as before. Resources are recognised by type, whatever their key.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()
_BY_PROVIDER: dict[str, Any] = {}


def _provider_of(resource: Any) -> str | None:
    try:
        from dagster_aws.s3 import S3Resource

        if isinstance(resource, S3Resource):
            return "s3"
    except ImportError:
        pass
    try:
        from dagster_gcp import GCSResource

        if isinstance(resource, GCSResource):
            return "gcs"
    except ImportError:
        pass
    try:
        from dagster_azure.blob import AzureBlobStorageResource

        if isinstance(resource, AzureBlobStorageResource):
            return "azure"
    except ImportError:
        pass
    return None


def _resolved(resource: Any) -> Any:
    """The resource (or a credential model inside it) with its EnvVar fields read from the environment. Done
    here rather than with Dagster's process_config_and_initialize(), which sets up a definitions load
    context outside any load (and breaks later loads in the same process)."""
    import dagster as dg

    updates: dict[str, Any] = {}
    for name in getattr(type(resource), "model_fields", {}):
        value = getattr(resource, name, None)
        if isinstance(value, dg.EnvVar):
            updates[name] = value.get_value()
        elif hasattr(type(value), "model_fields"):  # a nested model (Azure's credential)
            resolved = _resolved(value)
            if resolved is not value:
                updates[name] = resolved
    return resource.model_copy(update=updates) if updates else resource


def use(resources: dict[str, Any] | None) -> None:
    """Make the S3 / GCS / Azure resources among `resources` the stores' clients in this process (replacing
    an earlier one of the same provider; other providers are left as they are)."""
    found: dict[str, Any] = {}
    for resource in (resources or {}).values():
        provider = _provider_of(resource)
        if provider is not None:
            found[provider] = _resolved(resource)
    with _LOCK:
        _BY_PROVIDER.update(found)


def reset() -> None:
    """Forget every registered resource: the stores use config.toml and the environment again."""
    with _LOCK:
        _BY_PROVIDER.clear()


def get(provider: str) -> Any | None:
    """The registered resource for 's3', 'gcs' or 'azure', or None."""
    return _BY_PROVIDER.get(provider)


__all__ = ["use", "get", "reset"]

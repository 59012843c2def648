"""Images: references, registries (the OCI distribution API) and Berth's image store.

``refs`` (pure) splits and qualifies image references; ``registry`` is a
small async client of a registry's ``/v2/`` API; ``dockersave`` pushes the
images of a ``docker save`` archive through it; ``store_setup`` writes the
image store's ``docker-registry`` config with htpasswd auth.
"""

from __future__ import annotations

from berth.images.refs import (
    PUBLIC_NAMESPACE,
    registry_of,
    split_reference,
    store_reference,
    valid_repository,
    with_registry,
)
from berth.images.registry import RegistryClient

__all__ = [
    "PUBLIC_NAMESPACE",
    "RegistryClient",
    "registry_of",
    "split_reference",
    "store_reference",
    "valid_repository",
    "with_registry",
]

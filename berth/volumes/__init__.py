"""Volume drivers: where a Berth data volume lives on a host.

``base`` holds the ``VolumeDriver`` Protocol the runtime drivers call; ``local``
is the reference driver (Docker named volumes on the host). A Cinder driver
can be added beside it without touching the core, as an entry point of the
``berth.volumes`` group (``VOLUME_DRIVERS``) selected by ``volume_driver``.
"""

from berth.volumes.base import (
    LABEL_VOLUME,
    LABEL_VOLUME_OWNER,
    VOLUME_DRIVERS,
    VolumeDriver,
    VolumeFactory,
    volume_name,
)

__all__ = [
    "LABEL_VOLUME",
    "LABEL_VOLUME_OWNER",
    "VOLUME_DRIVERS",
    "VolumeDriver",
    "VolumeFactory",
    "volume_name",
]

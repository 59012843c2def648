"""Volume drivers: where a Berth data volume lives on a host.

``base`` holds the ``VolumeDriver`` Protocol the runtime drivers call; ``local``
is the reference driver (Docker named volumes on the host). A Cinder driver
can be added beside it without touching the core.
"""

from berth.volumes.base import (
    LABEL_VOLUME,
    LABEL_VOLUME_OWNER,
    VolumeDriver,
    volume_name,
)

__all__ = ["LABEL_VOLUME", "LABEL_VOLUME_OWNER", "VolumeDriver", "volume_name"]

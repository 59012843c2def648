"""Every table Berth stores, importable from one place (Alembic reads ``Base.metadata``)."""

from berth.store.tables.clusters import ClusterRow, ClusterTemplateRow, OutboxCursorRow
from berth.store.tables.containers import ActionEventRow, ContainerActionRow, ContainerRow
from berth.store.tables.events import EventRow
from berth.store.tables.hosts import HostRow, ServiceRow
from berth.store.tables.identity import (
    DomainRow,
    ProjectRow,
    RoleAssignmentRow,
    RoleRow,
    TokenRow,
    UserRow,
)
from berth.store.tables.images import ImageRow, RegistryRow
from berth.store.tables.quotas import QuotaClassRow, QuotaRow
from berth.store.tables.streams import StreamTokenRow

__all__ = [
    "ActionEventRow",
    "ClusterRow",
    "ClusterTemplateRow",
    "ContainerActionRow",
    "ContainerRow",
    "DomainRow",
    "EventRow",
    "HostRow",
    "ImageRow",
    "OutboxCursorRow",
    "ProjectRow",
    "QuotaClassRow",
    "QuotaRow",
    "RegistryRow",
    "RoleAssignmentRow",
    "RoleRow",
    "ServiceRow",
    "StreamTokenRow",
    "TokenRow",
    "UserRow",
]

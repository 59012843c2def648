"""Every table Berth stores, importable from one place (Alembic reads ``Base.metadata``)."""

from berth.store.tables.clusters import ClusterRow, ClusterTemplateRow, OutboxCursorRow
from berth.store.tables.containers import ActionEventRow, ContainerActionRow, ContainerRow
from berth.store.tables.events import EventRow
from berth.store.tables.files import ContainerFileRow
from berth.store.tables.hosts import DesiredChangeRow, HostRow, ServiceRow
from berth.store.tables.identity import (
    DomainRow,
    ProjectRow,
    RoleAssignmentRow,
    RoleRow,
    TokenRow,
    UserRow,
)
from berth.store.tables.images import ImageRow, RegistryRow
from berth.store.tables.login_failures import LoginFailureRow
from berth.store.tables.networks import AddressLeaseRow, NetworkRow, SecurityGroupRow
from berth.store.tables.nodegroups import ClusterQuotaRow, ConductorRow, NodeGroupRow
from berth.store.tables.quotas import QuotaClassRow, QuotaRow
from berth.store.tables.streams import StreamTokenRow
from berth.store.tables.volumes import CapsuleRow, VolumeRow

__all__ = [
    "ActionEventRow",
    "AddressLeaseRow",
    "CapsuleRow",
    "ClusterQuotaRow",
    "ClusterRow",
    "ClusterTemplateRow",
    "ConductorRow",
    "ContainerActionRow",
    "ContainerFileRow",
    "ContainerRow",
    "DesiredChangeRow",
    "DomainRow",
    "EventRow",
    "HostRow",
    "ImageRow",
    "LoginFailureRow",
    "NetworkRow",
    "NodeGroupRow",
    "OutboxCursorRow",
    "ProjectRow",
    "QuotaClassRow",
    "QuotaRow",
    "RegistryRow",
    "RoleAssignmentRow",
    "RoleRow",
    "SecurityGroupRow",
    "ServiceRow",
    "StreamTokenRow",
    "TokenRow",
    "UserRow",
    "VolumeRow",
]

"""Every table Berth stores, importable from one place (Alembic reads ``Base.metadata``)."""

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
from berth.store.tables.quotas import QuotaClassRow, QuotaRow

__all__ = [
    "ActionEventRow",
    "ContainerActionRow",
    "ContainerRow",
    "DomainRow",
    "EventRow",
    "HostRow",
    "ProjectRow",
    "QuotaClassRow",
    "QuotaRow",
    "RoleAssignmentRow",
    "RoleRow",
    "ServiceRow",
    "TokenRow",
    "UserRow",
]

"""SQLModel tables and API schemas, one module per domain.

Importing this package registers every table on ``SQLModel.metadata`` (Alembic and the
test suite rely on that), after ``base`` has installed the constraint naming convention.
"""

from models import base as base  # noqa: I001  (naming convention before any table)
from models.alert import Alert
from models.audit import AuditEntry
from models.coldchain import Device, Excursion, Reading, ShipmentState
from models.courier_feed import CourierFeed
from models.delay import CaseDelayCheck
from models.metrics import CaseTurnaround, TurnaroundCell, TurnaroundCellDirty
from models.case import Case, CoiSequence, Milestone, MilestoneCorrection, ProductHold, Slot
from models.notification import AlertEscalation, Notification, NotificationPrefs, OnCall
from models.principal import IdempotencyRecord, Principal, WebSession
from models.reference import Courier, Product, Profile, Route, RouteLeg, Site
from models.shipment import CustodyEvent, DeviceAssignment, Shipment
from models.webhook import Webhook, WebhookDelivery

__all__ = [
    "Alert",
    "AlertEscalation",
    "AuditEntry",
    "Case",
    "CaseDelayCheck",
    "CaseTurnaround",
    "CoiSequence",
    "Courier",
    "CourierFeed",
    "CustodyEvent",
    "Device",
    "Excursion",
    "DeviceAssignment",
    "IdempotencyRecord",
    "Milestone",
    "MilestoneCorrection",
    "Notification",
    "NotificationPrefs",
    "OnCall",
    "Principal",
    "Product",
    "ProductHold",
    "Profile",
    "Reading",
    "Route",
    "RouteLeg",
    "Shipment",
    "ShipmentState",
    "Site",
    "Slot",
    "TurnaroundCell",
    "TurnaroundCellDirty",
    "Webhook",
    "WebhookDelivery",
    "WebSession",
]

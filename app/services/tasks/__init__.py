"""The caller's task list: what is due, for whom, derived from what is already recorded.

Nothing is stored here. Planned times come from the case (booked apheresis, planned
infusion), predicted ones from the delay model (``delays.routes.predict``: slots, legs,
live ETAs), and the waiting items from alerts, excursions and holds, each in the same
scope as the case, shipment and alert lists.
"""

from app.services.tasks.badge import open_alert_count
from app.services.tasks.listing import tasks_for

__all__ = ["open_alert_count", "tasks_for"]

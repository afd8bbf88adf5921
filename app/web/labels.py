"""Display names of the API's codes (statuses, kinds, milestones), marked for translation."""

from __future__ import annotations

from app.web.i18n import N_

CASE_STATUS = {
    "registered": N_("Registered"),
    "apheresis_scheduled": N_("Apheresis scheduled"),
    "collected": N_("Collected"),
    "in_transit_to_manufacturing": N_("In transit to factory"),
    "at_manufacturing": N_("At factory"),
    "in_manufacturing": N_("In manufacturing"),
    "released": N_("Released"),
    "in_transit_to_site": N_("In transit to hospital"),
    "at_site": N_("At hospital"),
    "thawed": N_("Thawed"),
    "infused": N_("Infused"),
    "cancelled": N_("Cancelled"),
    "failed": N_("Manufacturing failed"),
}

MILESTONE = {
    "collected": N_("Apheresis collected"),
    "shipped_to_manufacturing": N_("Picked up for the factory"),
    "received_at_manufacturing": N_("Received at factory"),
    "manufacturing_started": N_("Manufacturing started"),
    "qc_released": N_("QC released"),
    "manufacturing_failed": N_("Manufacturing failed"),
    "shipped_to_site": N_("Picked up for the hospital"),
    "received_at_site": N_("Received at hospital"),
    "thawed": N_("Thawed"),
    "infused": N_("Infusion"),
    "cancelled": N_("Cancelled"),
    "recollection": N_("Recollection"),
}

TIMELINE_STATE = {
    "done": N_("Done"),
    "done_late": N_("Done late"),
    "predicted": N_("Predicted"),
    "at_risk": N_("At risk"),
    "late": N_("Late"),
    "not_reached": N_("Not reached"),
}

ALERT_KIND = {
    "temperature_excursion": N_("Temperature excursion"),
    "loss_of_signal": N_("Loss of signal"),
    "delay_at_risk": N_("Delay at risk"),
    "delay_breached": N_("Delay target breached"),
    "coi_mismatch": N_("COI mismatch"),
    "hold_time_at_risk": N_("Dry-shipper hold time at risk"),
    "thaw_window": N_("Thaw window"),
    "slot_conflict": N_("Slot conflict"),
}

SEVERITY = {
    "critical": N_("Critical"),
    "major": N_("Major"),
    "warning": N_("Warning"),
    "info": N_("Info"),
}

ALERT_STATUS = {
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "resolved": N_("Resolved"),
}

SHIPMENT_STATUS = {
    "created": N_("Created"),
    "in_transit": N_("In transit"),
    "delivered": N_("Delivered"),
    "cancelled": N_("Cancelled"),
}

DIRECTION = {
    "to_manufacturing": N_("To the factory"),
    "to_site": N_("To the hospital"),
}

CUSTODY_ACTION = {
    "picked_up": N_("Picked up"),
    "handoff": N_("Handed over"),
    "delivered": N_("Delivered"),
}

SIGNAL = {
    "ok": N_("In range"),
    "watch": N_("Watch"),
    "alarm": N_("Alarm"),
}

ROUTE_KIND = {"local": N_("Local"), "overseas": N_("Overseas")}

LEG = {
    "collection_to_receipt_h": N_("Collection → factory receipt"),
    "receipt_to_start_h": N_("Receipt → manufacturing start"),
    "start_to_release_d": N_("Manufacturing → QC release"),
    "release_to_site_h": N_("Release → hospital receipt"),
    "site_to_infusion_d": N_("Hospital receipt → infusion"),
}

DECISION = {
    "accept": N_("Accept (material usable)"),
    "quarantine": N_("Quarantine (hold for investigation)"),
    "reject": N_("Reject (material not usable)"),
}

EXCURSION_KIND = {
    "high": N_("Above range"),
    "low": N_("Below range"),
    "critical_high": N_("Critically high"),
    "critical_low": N_("Critically low"),
}

ROLE = {
    "admin": N_("Administrator"),
    "coordinator": N_("Coordinator"),
    "manufacturer": N_("Factory"),
    "courier": N_("Courier"),
    "qa": N_("Quality assurance"),
    "viewer": N_("Viewer"),
}

MEANING = {
    "approval": N_("Approval of the disposition"),
    "review": N_("Review of the excursion"),
}

SIGNAL_REASON = {
    "open_excursion": N_("excursion in progress"),
    "serious_alert": N_("major or critical alert"),
    "no_recent_reading": N_("no recent reading"),
    "alert": N_("unresolved alert"),
    "past_excursion": N_("earlier excursion"),
}

CORRECTION_MEANING = {
    "authorship": N_("Authorship of the correction"),
    "approval": N_("Approval of the correction"),
}

HOLD_MEANING = {
    "approval": N_("Approval of the hold decision"),
    "review": N_("Review of the product's status"),
}

HOLD_SOURCE = {
    "manual": N_("placed by hand"),
    "excursion": N_("a QA disposition of an excursion"),
    "reassess": N_("late readings change a signed excursion"),
}

RECORD_STATUS = {
    "valid": N_("Valid"),
    "amended": N_("Amended"),
    "voided": N_("Voided"),
}

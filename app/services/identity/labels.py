"""Printing a case's chain-of-identity label: what goes on it, and the print record.

Every print is audited (``case.label.printed``) with its number, so the labels printed for a
COI can be reconciled with the labels applied (ST-028: a COI label is never printed
unaccounted for). The label itself is drawn by ``integrations.isbt128``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.services.audit import chain as audit
from app.services.identity.coi import check_char
from integrations.isbt128 import MEDIA_TYPES, TEMPLATE_VERSION, LabelData, render
from models.audit import AuditEntry
from models.case import Case, Milestone
from models.principal import Principal
from models.reference import Product, Site

PRINTED = "case.label.printed"


@dataclass(frozen=True)
class PrintedLabel:
    content: bytes
    media_type: str
    filename: str
    print_no: int


def label_data(session: Session, *, case: Case) -> LabelData:
    """The label's content: COI, check character, product, site and collection date."""
    product = session.get(Product, case.product)
    site = session.get(Site, case.site)
    if product is None or site is None:  # guaranteed by foreign keys
        raise RuntimeError("inconsistent data: product or site missing")
    collected = session.exec(
        select(Milestone.occurred_at)
        .where(
            Milestone.case_id == case.id,
            Milestone.cycle == case.cycle,
            Milestone.type == "collected",
            col(Milestone.status) != "voided",
        )
        .order_by(col(Milestone.id).desc())
        .limit(1)
    ).first()
    collected_on = (
        collected.astimezone(ZoneInfo(site.timezone)).date().isoformat() if collected else None
    )
    return LabelData(
        coi=case.coi,
        check=check_char(case.coi),
        product=product.name,
        site=site.name,
        collected_on=collected_on,
    )


def print_label(
    session: Session, *, case: Case, actor: Principal, fmt: str, now: datetime
) -> PrintedLabel:
    """Draw the label in ``fmt`` (png, svg, pdf) and record the print (flushes)."""
    data = label_data(session, case=case)
    content = render(data, fmt)
    audit.seal(session)  # prints recorded earlier in this transaction count too
    earlier = session.exec(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.entity == "case",
            AuditEntry.entity_id == case.id,
            AuditEntry.action == PRINTED,
        )
    ).one()
    print_no = int(earlier) + 1
    audit.append(
        session,
        actor=actor,
        action=PRINTED,
        entity="case",
        entity_id=case.id,
        at=now,
        after={
            "coi": case.coi,
            "format": fmt,
            "template": TEMPLATE_VERSION,
            "print_no": print_no,
            "collected_on": data.collected_on,
        },
    )
    return PrintedLabel(
        content=content,
        media_type=MEDIA_TYPES[fmt],
        filename=f"coi-{case.coi}-{print_no}.{fmt}",
        print_no=print_no,
    )

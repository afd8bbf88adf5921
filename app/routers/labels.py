"""The printable chain-of-identity label of a case (ISBT 128 DS040)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import NowDep, ScopedCase, SessionDep, committing, require_roles
from app.services.access.scope import CASE_READERS
from app.services.identity import labels
from models.principal import Principal

router = APIRouter(prefix="/cases", tags=["cases"])

Printer = Annotated[Principal, require_roles(*CASE_READERS)]

_LABEL_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The label: Code 128 and Data Matrix symbols of `&/` + the COI, the "
        "eye-readable COI with its check character boxed, product, site, collection date.",
        "content": {"application/pdf": {}, "image/png": {}, "image/svg+xml": {}},
        "headers": {"X-V2V-Print-Number": {"description": "This print's number for the COI"}},
    }
}


@router.get("/{case_id}/label", response_class=Response, responses=_LABEL_RESPONSES)
def case_label(
    case: ScopedCase,
    principal: Printer,
    session: SessionDep,
    now: NowDep,
    format: Annotated[Literal["pdf", "svg", "png"], Query()] = "pdf",  # noqa: A002
) -> Response:
    """Print the case's COI label (audited and numbered per COI); never a patient reference."""
    with committing(session):
        printed = labels.print_label(session, case=case, actor=principal, fmt=format, now=now)
    return Response(
        printed.content,
        media_type=printed.media_type,
        headers={
            "Content-Disposition": f'inline; filename="{printed.filename}"',
            "X-V2V-Print-Number": str(printed.print_no),
            "Cache-Control": "no-store",
        },
    )

"""Courier feeds (admin): add a courier's tracking API, watch its cursor and lag, pause it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse

from app.deps import IdempotencyDep, NowDep, SessionDep, committing, created_once, require_roles
from app.services.interop import courier_feeds as feeds
from models.base import Page
from models.courier_feed import CourierFeedCreate, CourierFeedPublic, CourierFeedUpdate
from models.principal import Principal, Role

router = APIRouter(prefix="/integrations/courier/feeds", tags=["interop"])
Admin = Annotated[Principal, require_roles(Role.admin)]
CourierCode = Annotated[str, Path(min_length=1, max_length=32)]


def _public(feed: feeds.FeedStatus) -> CourierFeedPublic:
    return CourierFeedPublic.model_validate(feed, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CourierFeedPublic)
def add_feed(
    body: CourierFeedCreate, session: SessionDep, admin: Admin, now: NowDep, idem: IdempotencyDep
) -> CourierFeedPublic | JSONResponse:
    """Add a courier's feed; the poller reads it from the start of its stream."""

    def add() -> CourierFeedPublic:
        return _public(
            feeds.add_feed(
                session,
                courier=body.courier,
                base_url=body.base_url,
                auth_token=body.auth_token,
                actor=admin,
                now=now,
                active=body.active,
            )
        )

    return created_once(session, idem, add)


@router.get("", response_model=Page[CourierFeedPublic])
def list_feeds(session: SessionDep, _admin: Admin, now: NowDep) -> Page[CourierFeedPublic]:
    """Every courier feed with its cursor, lag, last success and last error."""
    return Page(items=[_public(f) for f in feeds.list_feeds(session, now=now)])


@router.patch("/{courier}", response_model=CourierFeedPublic)
def update_feed(
    courier: CourierCode, body: CourierFeedUpdate, session: SessionDep, admin: Admin, now: NowDep
) -> CourierFeedPublic:
    """Pause (`active: false`) or resume a feed; its cursor stays where it is."""
    with committing(session):
        feed = feeds.set_feed_active(
            session, courier=courier, active=body.active, actor=admin, now=now
        )
    return _public(feed)

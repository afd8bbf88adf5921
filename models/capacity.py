"""Factory capacity as the API shows it: positions per local day."""

from __future__ import annotations

from datetime import date

from models.base import ResponseModel


class Day(ResponseModel):
    date: date
    capacity: int
    booked: int
    free: int


class Availability(ResponseModel):
    site: str
    timezone: str
    days: list[Day]

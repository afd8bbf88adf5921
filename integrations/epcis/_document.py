"""Run-time validation of the parts of an EPCIS 2.0 document that we use.

GS1's JSON Schema is the conformance reference (the tests validate against it); these pydantic
models check, strictly (JSON types, no NaN, RFC 3339 times with an offset), the fields that
capture reads, and keep every other field and extension (``model_extra``), so capture can
report what it did not map. A fault is reported as an
RFC 6901 JSON pointer into the document, e.g. ``/epcisBody/eventList/3/sensorElementList/0/
sensorReport/2/value``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic import StringConstraints as Str

Text = Annotated[str, Str(min_length=1, max_length=2000)]


def _plausible(at: datetime) -> datetime:
    # Far outside it, UTC conversion and millisecond arithmetic overflow.
    if not 1970 <= at.year <= 9000:
        raise ValueError("a time between the years 1970 and 9000 is required")
    return at


Instant = Annotated[AwareDatetime, AfterValidator(_plausible)]
MAX_ERRORS = 50
_NEEDS_ACTION = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "AssociationEvent")


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)


class SensorMetadata(_Model):
    time: Instant | None = None
    start_time: Instant | None = Field(None, alias="startTime")
    end_time: Instant | None = Field(None, alias="endTime")
    device_id: Text | None = Field(None, alias="deviceID")

    @model_validator(mode="after")
    def _ordered(self) -> SensorMetadata:
        if self.start_time and self.end_time and self.end_time < self.start_time:
            raise ValueError("endTime precedes startTime")
        return self


class SensorReport(_Model):
    type: Text
    exception: Text | None = None
    device_id: Text | None = Field(None, alias="deviceID")
    time: Instant | None = None
    value: float | None = None
    min_value: float | None = Field(None, alias="minValue")
    max_value: float | None = Field(None, alias="maxValue")
    mean_value: float | None = Field(None, alias="meanValue")
    uom: Annotated[str, Str(min_length=1, max_length=16)] | None = None
    component: Text | None = None
    boolean_value: bool | None = Field(None, alias="booleanValue")
    string_value: str | None = Field(None, alias="stringValue")
    uri_value: Text | None = Field(None, alias="uriValue")

    @model_validator(mode="after")
    def _range(self) -> SensorReport:
        if self.min_value is not None and self.max_value is not None:
            if self.max_value < self.min_value:
                raise ValueError("maxValue is below minValue")
        return self


class SensorElement(_Model):
    sensor_metadata: SensorMetadata | None = Field(None, alias="sensorMetadata")
    sensor_report: Annotated[list[SensorReport], Field(min_length=1)] = Field(alias="sensorReport")


class Place(_Model):
    id: Text


class Source(_Model):
    type: Text
    source: Text


class Destination(_Model):
    type: Text
    destination: Text


class Event(_Model):
    type: Text
    event_time: Instant = Field(alias="eventTime")
    event_time_zone_offset: (
        Annotated[str, Str(pattern=r"^[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)$")] | None
    ) = Field(None, alias="eventTimeZoneOffset")
    action: Literal["OBSERVE", "ADD", "DELETE"] | None = None
    epc_list: list[Text] = Field([], alias="epcList")
    parent_id: Text | None = Field(None, alias="parentID")
    child_epcs: list[Text] = Field([], alias="childEPCs")
    biz_step: Text | None = Field(None, alias="bizStep")
    read_point: Place | None = Field(None, alias="readPoint")
    biz_location: Place | None = Field(None, alias="bizLocation")
    source_list: list[Source] = Field([], alias="sourceList")
    destination_list: list[Destination] = Field([], alias="destinationList")
    sensor_element_list: list[SensorElement] = Field([], alias="sensorElementList")

    @model_validator(mode="after")
    def _required_by_type(self) -> Event:
        if self.type in _NEEDS_ACTION and not self.action:
            raise ValueError(f"an {self.type} requires action (OBSERVE, ADD or DELETE)")
        if self.type == "AssociationEvent" and not self.parent_id:
            raise ValueError("an AssociationEvent requires parentID")
        return self


class Body(_Model):
    event_list: list[Event] = Field(alias="eventList")


class Document(_Model):
    context: Any = Field(alias="@context")
    type: Literal["EPCISDocument"]
    schema_version: Annotated[str, Str(pattern=r"^2(\.\d+)*$")] = Field(alias="schemaVersion")
    creation_date: Instant = Field(alias="creationDate")
    epcis_body: Body = Field(alias="epcisBody")


class DocumentInvalid(ValueError):
    """The document does not parse or breaks the models; ``errors`` hold JSON pointers."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid EPCIS document")
        self.errors = errors


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer (``""`` is the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def parse_document(body: bytes | str) -> Document:
    """Parse and validate a capture body, or raise ``DocumentInvalid`` with pointers."""
    try:
        return Document.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {"loc": pointer(*err["loc"]), "msg": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]
        ]
        raise DocumentInvalid(errors) from None

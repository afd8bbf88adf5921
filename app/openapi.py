"""Post-processing of the generated OpenAPI document: the problem schema and response links.

Links (OpenAPI 3.1) tell a client which later calls take an id from a response, so tools
such as schemathesis' stateful phase can chain a registration into its reads and actions.
They are declared here, in one table keyed by method and path, so routers stay plain.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.errors import ProblemDetail

API = "/api/v1"
CASE = f"{API}/cases/{{case_id}}"
SHIPMENT = f"{API}/shipments/{{shipment_id}}"

Target = tuple[str, str]  # (method, path) of the operation a link leads to


def _link(
    target: Target,
    *,
    parameters: dict[str, str] | None = None,
    body: dict[str, str] | None = None,
    description: str,
) -> dict[str, Any]:
    link: dict[str, Any] = {"target": target, "description": description}
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


CASE_ID = {"path.case_id": "$response.body#/id"}
SHIPMENT_ID = {"path.shipment_id": "$response.body#/id"}

# (method, path, status) of a response -> its links by name.
LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    ("post", f"{API}/cases", "201"): {
        "GetCase": _link(("get", CASE), parameters=CASE_ID, description="The case registered."),
        "ScheduleCase": _link(
            ("post", f"{CASE}/schedule"), parameters=CASE_ID, description="Book its apheresis."
        ),
        "RecordEvent": _link(
            ("post", f"{CASE}/events"),
            parameters=CASE_ID,
            body={"coi": "$response.body#/coi"},
            description="Record a milestone, presenting the case's own label.",
        ),
        "CreateShipment": _link(
            ("post", f"{API}/shipments"),
            body={"case_id": "$response.body#/id", "coi": "$response.body#/coi"},
            description="Ship the case's material.",
        ),
        "CaseAlerts": _link(
            ("get", f"{API}/alerts"),
            parameters={"query.case_id": "$response.body#/id"},
            description="The case's alerts.",
        ),
        "FhirProduct": _link(
            ("get", f"{API}/integrations/fhir/BiologicallyDerivedProduct/{{case_id}}"),
            parameters=CASE_ID,
            description="The case as a FHIR BiologicallyDerivedProduct.",
        ),
        "EpcisEvents": _link(
            ("get", f"{API}/integrations/epcis/events"),
            parameters={"query.case_id": "$response.body#/id"},
            description="The case's custody and sensor data as EPCIS 2.0.",
        ),
    },
    ("get", f"{API}/cases", "200"): {
        "GetCase": _link(
            ("get", CASE),
            parameters={"path.case_id": "$response.body#/items/0/id"},
            description="The first case listed.",
        ),
    },
    ("post", f"{CASE}/schedule", "200"): {
        "GetCase": _link(
            ("get", CASE),
            parameters={"path.case_id": "$response.body#/case_id"},
            description="The case scheduled.",
        ),
        "CreateShipment": _link(
            ("post", f"{API}/shipments"),
            body={"case_id": "$response.body#/case_id"},
            description="Ship the material collected at the booked apheresis.",
        ),
    },
    ("post", f"{CASE}/events", "201"): {
        "GetCase": _link(
            ("get", CASE),
            parameters={"path.case_id": "$response.body#/case_id"},
            description="The case with the new milestone.",
        ),
    },
    ("post", f"{API}/shipments", "201"): {
        "GetShipment": _link(
            ("get", SHIPMENT), parameters=SHIPMENT_ID, description="The shipment created."
        ),
        "RecordCustody": _link(
            ("post", f"{SHIPMENT}/custody"),
            parameters=SHIPMENT_ID,
            body={"coi": "$response.body#/coi"},
            description="Record a custody scan, presenting the case's own label.",
        ),
        "ShipmentTrace": _link(
            ("get", f"{SHIPMENT}/readings"),
            parameters=SHIPMENT_ID,
            description="The shipment's temperature trace.",
        ),
        "ShipmentExcursions": _link(
            ("get", f"{API}/excursions"),
            parameters={"query.shipment_id": "$response.body#/id"},
            description="The shipment's excursions.",
        ),
        "GetCase": _link(
            ("get", CASE),
            parameters={"path.case_id": "$response.body#/case_id"},
            description="The shipment's case.",
        ),
    },
    ("post", f"{SHIPMENT}/custody", "201"): {
        "GetShipment": _link(
            ("get", SHIPMENT),
            parameters={"path.shipment_id": "$request.path.shipment_id"},
            description="The shipment after the scan.",
        ),
    },
    ("get", f"{API}/alerts", "200"): {
        "AcknowledgeAlert": _link(
            ("post", f"{API}/alerts/{{alert_id}}/ack"),
            parameters={"path.alert_id": "$response.body#/items/0/id"},
            description="Acknowledge the first alert listed.",
        ),
    },
    ("get", f"{API}/excursions", "200"): {
        "Disposition": _link(
            ("post", f"{API}/excursions/{{excursion_id}}/disposition"),
            parameters={"path.excursion_id": "$response.body#/items/0/id"},
            description="Sign the disposition of the first excursion listed.",
        ),
    },
    ("post", f"{API}/webhooks", "201"): {
        "Deliveries": _link(
            ("get", f"{API}/webhooks/deliveries"),
            parameters={"query.webhook_id": "$response.body#/id"},
            description="The subscription's deliveries.",
        ),
    },
    ("get", f"{API}/webhooks/deliveries", "200"): {
        "RetryDelivery": _link(
            ("post", f"{API}/webhooks/deliveries/{{delivery_id}}/retry"),
            parameters={"path.delivery_id": "$response.body#/items/0/id"},
            description="Retry the first delivery listed.",
        ),
    },
    ("post", f"{API}/sites", "201"): {
        "GetSite": _link(
            ("get", f"{API}/sites/{{code}}"),
            parameters={"path.code": "$response.body#/code"},
            description="The site added.",
        ),
    },
}


def add_links(schema: dict[str, Any]) -> None:
    """Attach the table's links to the document's responses, naming targets by operationId."""
    paths = schema.get("paths", {})
    for (method, path, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        out = response.setdefault("links", {})
        for name, spec in links.items():
            target_method, target_path = spec["target"]
            link = {k: v for k, v in spec.items() if k != "target"}
            out[name] = {"operationId": paths[target_path][target_method]["operationId"], **link}


def customise(app: FastAPI) -> None:
    """Serve the generated document with ProblemDetail in components and the links added."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["ProblemDetail"] = ProblemDetail.model_json_schema()
            add_links(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

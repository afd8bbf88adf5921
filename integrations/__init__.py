"""Formats and external systems: EPCIS 2.0, FHIR R5, courier APIs, webhooks, MQTT, geodesy."""

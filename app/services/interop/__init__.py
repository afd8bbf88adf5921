"""Interop: the use cases behind the external formats of ``integrations/``.

``epcis_capture`` (with ``epcis_custody`` and ``epcis_sensors``) applies an EPCIS document,
``epcis_export`` and ``fhir`` read a case into a document, ``courier`` keeps the courier
feeds and stores their pages, ``mqtt`` authorises a publisher and stores its message.
Readings from every one of them go through ``app.services.coldchain.ingest``.
"""

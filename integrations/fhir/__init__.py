"""HL7 FHIR R5 export of a case's product (BiologicallyDerivedProduct) and its infusion
(BiologicallyDerivedProductDispense), as plain JSON (``application/fhir+json``).

Mapping, from a case:

- ``id``: the case id; ``identifier``: the COI under ISBT 128's OID
  (``urn:oid:2.16.840.1.113883.6.18``), its MOD 37-2 check character in an extension;
- ``productCategory``: ``cells``; ``productCode``: the product (our code system);
- ``biologicalSourceEvent``: the collection, ``{COI}-{collection cycle}``;
- ``processingFacility``: the route's factory (Organization, by site code and name);
- ``storageTempRequirements``: the outbound profile's range in ``Cel`` (UCUM);
- ``productStatus``: ``available`` from QC release until infusion, ``unavailable`` before
  release and once infused, failed or cancelled; the journey status itself in an extension;
- ``collection``: collected time, source a Patient placeholder identified by the COI only;
- ``property``: collection cycle, receipt at the factory, manufacturing start → QC release;
- ``expirationDate``: thaw time + the product's thaw expiry, once thawed.

Once infused, the export is a ``collection`` Bundle of the product and a dispense
(``issued``, autologous, handed over at infusion, prepared at thaw, at the treatment site).

Resources are built from a ``Snapshot`` (no database here); reading a case into one is
``app.services.interop.fhir.export_case``.
"""

from integrations.fhir._resources import (
    EXT_CHECK_CHARACTER,
    EXT_JOURNEY_STATUS,
    FHIR_JSON,
    ISBT128_SYSTEM,
    Place,
    Snapshot,
    dispense,
    export,
    product,
    product_status,
)

__all__ = [
    "EXT_CHECK_CHARACTER",
    "EXT_JOURNEY_STATUS",
    "FHIR_JSON",
    "ISBT128_SYSTEM",
    "Place",
    "Snapshot",
    "dispense",
    "export",
    "product",
    "product_status",
]

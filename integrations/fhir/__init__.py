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

Once infused, the case also has a BiologicallyDerivedProductDispense (``issued``,
autologous, handed over at infusion, prepared at thaw, at the treatment site).

Resources are built from a ``Snapshot`` (no database here); ``_server`` writes searchset
Bundles, the CapabilityStatement and OperationOutcomes. Reading cases into snapshots is
``app.services.interop.fhir``.
"""

from integrations.fhir._resources import (
    EXT_CHECK_CHARACTER,
    EXT_JOURNEY_STATUS,
    FHIR_JSON,
    ISBT128_SYSTEM,
    Place,
    Snapshot,
    dispense,
    product,
    product_status,
)
from integrations.fhir._server import (
    FHIR_VERSION,
    capability_statement,
    operation_outcome,
    searchset,
)

__all__ = [
    "EXT_CHECK_CHARACTER",
    "EXT_JOURNEY_STATUS",
    "FHIR_JSON",
    "FHIR_VERSION",
    "ISBT128_SYSTEM",
    "Place",
    "Snapshot",
    "capability_statement",
    "dispense",
    "product",
    "operation_outcome",
    "product_status",
    "searchset",
]

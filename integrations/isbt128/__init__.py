"""ISBT 128 chain-of-identity labels: the DS040 symbols (Code 128, Data Matrix) and the
printable label drawn from one layout as PNG, SVG or PDF. Formats only: no database."""

from integrations.isbt128._label import (
    MEDIA_TYPES,
    TEMPLATE_VERSION,
    LabelData,
    code128_modules,
    datamatrix_modules,
    layout,
    render,
    symbol_data,
)

__all__ = [
    "MEDIA_TYPES",
    "TEMPLATE_VERSION",
    "LabelData",
    "code128_modules",
    "datamatrix_modules",
    "layout",
    "render",
    "symbol_data",
]

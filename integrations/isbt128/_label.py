"""The printable chain-of-identity label: one layout in millimetres, drawn as PNG, SVG or PDF.

What is printed, following ICCBBA's published rules for ISBT 128 symbols (ST-001 §6–7;
ST-028 for the chain-of-identity identifier, data structure 040):

- the DS040 code with its data identifier (``&/CH…``) as a Code 128 symbol, subset C
  wherever a run of digits makes the symbol shorter (the encoder picks the shortest),
  narrow bar 0.25 mm, quiet zone of 10 narrow bars on each side, 12 mm high;
- the eye-readable code below it without the data identifier, in a dot font that tells 1
  from I and 0 from O, the MOD 37-2 check character apart in a drawn box (the check
  character is never in the barcode: scanners do not need it, people typing do);
- a Data Matrix ECC 200 symbol (0.5 mm modules, quiet zone of 2 modules) with the same
  data;
- product, site and collection date (a blank to write on before collection), and the
  template version. Never a patient name or reference: the label carries none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import zxingcpp
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from integrations.isbt128._glyphs import DOTS, HEIGHT, WIDTH

TEMPLATE_VERSION = "V2V-COI-LABEL 1.0"
DATA_IDENTIFIER = "&/"

NARROW_MM = 0.25  # Code 128 module (ST-001: 0.25 mm nominal, never under 0.17 mm)
QUIET_MODULES = 10
BAR_HEIGHT_MM = 12.0
MATRIX_MODULE_MM = 0.5
MATRIX_QUIET_MODULES = 2
DOT_MM = 0.4  # eye-readable dot; a character is 5 × 7 dots, advancing 6
PX_PER_MM = 12  # PNG resolution (304.8 dpi): a narrow bar is exactly 3 pixels

MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}


@dataclass(frozen=True)
class LabelData:
    coi: str  # the 15-character DS040 content, without data identifier or check character
    check: str  # ISO/IEC 7064 MOD 37-2 check character
    product: str
    site: str
    collected_on: str | None  # ISO date in the site's time zone, None before collection


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    filled: bool = True
    stroke: float = 0.0


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    size: float  # cap height-ish, in mm
    text: str
    bold: bool = False


@dataclass
class Layout:
    width: float
    height: float
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)


def symbol_data(coi: str) -> str:
    """What both symbols carry: the data identifier and the DS040 content."""
    return DATA_IDENTIFIER + coi


def code128_modules(data: str) -> str:
    """The Code 128 symbol as modules, ``1`` dark: start, data, check, stop (no quiet zone)."""
    return _modules(data, zxingcpp.BarcodeFormat.Code128)[0]


def datamatrix_modules(data: str) -> list[str]:
    """The Data Matrix ECC 200 symbol as rows of modules, ``1`` dark (no quiet zone)."""
    return _modules(data, zxingcpp.BarcodeFormat.DataMatrix)


def _modules(data: str, fmt: zxingcpp.BarcodeFormat) -> list[str]:
    image = zxingcpp.create_barcode(data, fmt).to_image(scale=1, add_quiet_zones=False)
    pixels = memoryview(image).cast("B")  # type: ignore[arg-type]  # a buffer at runtime
    rows, cols = image.shape
    return [
        "".join("1" if pixels[r * cols + c] < 128 else "0" for c in range(cols))
        for r in range(rows)
    ]


def _runs(modules: str) -> list[tuple[int, int]]:
    """(start, length) of each dark run."""
    out: list[tuple[int, int]] = []
    start = None
    for i, m in enumerate(modules + "0"):
        if m == "1" and start is None:
            start = i
        elif m == "0" and start is not None:
            out.append((start, i - start))
            start = None
    return out


def layout(label: LabelData) -> Layout:
    """Every mark of the label, in millimetres from the top left corner."""
    data = symbol_data(label.coi)
    bars = code128_modules(data)
    quiet = QUIET_MODULES * NARROW_MM
    margin = 1.0
    bar_x, bar_y = margin + quiet, 2.5
    out = Layout(width=0.0, height=37.0)
    for start, length in _runs(bars):
        out.rects.append(Rect(bar_x + start * NARROW_MM, bar_y, length * NARROW_MM, BAR_HEIGHT_MM))
    code_right = bar_x + len(bars) * NARROW_MM + quiet

    # Eye-readable: the content in dots, then the check character in a drawn box.
    pitch = (WIDTH + 1) * DOT_MM
    text_y = bar_y + BAR_HEIGHT_MM + 1.6
    x = bar_x
    for char in label.coi:
        _dots(out, char, x, text_y)
        x += pitch
    pad = 2 * DOT_MM
    box_x = x + DOT_MM
    box = Rect(
        box_x, text_y - pad, WIDTH * DOT_MM + 2 * pad, HEIGHT * DOT_MM + 2 * pad, False, 0.25
    )
    out.rects.append(box)
    _dots(out, label.check, box_x + pad, text_y)

    # Data Matrix to the right of the linear symbol's quiet zone.
    matrix = datamatrix_modules(data)
    quiet_m = MATRIX_QUIET_MODULES * MATRIX_MODULE_MM
    mx, my = code_right + quiet_m, bar_y
    for r, row in enumerate(matrix):
        for start, length in _runs(row):
            out.rects.append(
                Rect(
                    mx + start * MATRIX_MODULE_MM,
                    my + r * MATRIX_MODULE_MM,
                    length * MATRIX_MODULE_MM,
                    MATRIX_MODULE_MM,
                )
            )
    matrix_right = mx + len(matrix[0]) * MATRIX_MODULE_MM + quiet_m
    out.width = round(max(matrix_right, box_x + box.w) + margin, 2)

    room = out.width - bar_x - margin
    lines = [
        Text(bar_x, 26.0, _fit(2.6, label.product, room), label.product, bold=True),
        Text(bar_x, 29.6, _fit(2.2, label.site, room), label.site),
        Text(bar_x, 33.0, 2.2, f"Collected: {label.collected_on or '____-__-__'}"),
        Text(bar_x, 35.8, 1.6, f"ISBT 128 DS040 · {TEMPLATE_VERSION}"),
    ]
    out.texts.extend(lines)
    return out


def _fit(size: float, text: str, room: float) -> float:
    """A smaller size for a long name, so it stays on the label (0.6 em per character is
    wider than the average of the sans-serif fonts used)."""
    return min(size, room / max(1, len(text) * 0.6 * 1.35))


def _dots(out: Layout, char: str, x: float, y: float) -> None:
    for cx, cy in DOTS.get(char, DOTS["*"]):
        out.rects.append(Rect(x + cx * DOT_MM, y + cy * DOT_MM, DOT_MM, DOT_MM))


def render(label: LabelData, fmt: str) -> bytes:
    """The label as ``png``, ``svg`` or ``pdf`` bytes."""
    drawn = layout(label)
    if fmt == "png":
        return _png(drawn)
    if fmt == "svg":
        return _svg(drawn)
    if fmt == "pdf":
        return _pdf(drawn, label)
    raise ValueError(f"unknown label format {fmt!r}")


def _px(value: float) -> int:
    return round(value * PX_PER_MM)


def _png(drawn: Layout) -> bytes:
    image = Image.new("L", (_px(drawn.width), _px(drawn.height)), 255)
    pen = ImageDraw.Draw(image)
    for r in drawn.rects:
        box = (_px(r.x), _px(r.y), _px(r.x + r.w) - 1, _px(r.y + r.h) - 1)
        if r.filled:
            pen.rectangle(box, fill=0)
        else:
            pen.rectangle(box, outline=0, width=max(1, _px(r.stroke)))
    for t in drawn.texts:
        font = ImageFont.load_default(size=_px(t.size * 1.35))
        pen.text((_px(t.x), _px(t.y)), t.text, fill=0, font=font, anchor="ls")
    out = io.BytesIO()
    dpi = PX_PER_MM * 25.4
    image.save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


def _svg(drawn: Layout) -> bytes:
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{drawn.width}mm" height="{drawn.height}mm" '
        f'viewBox="0 0 {drawn.width} {drawn.height}">',
        f'<rect x="0" y="0" width="{drawn.width}" height="{drawn.height}" fill="#fff"/>',
    ]
    for r in drawn.rects:
        if r.filled:
            parts.append(
                f'<rect x="{r.x:.3f}" y="{r.y:.3f}" width="{r.w:.3f}" height="{r.h:.3f}"/>'
            )
        else:
            parts.append(
                f'<rect x="{r.x:.3f}" y="{r.y:.3f}" width="{r.w:.3f}" height="{r.h:.3f}" '
                f'fill="none" stroke="#000" stroke-width="{r.stroke}"/>'
            )
    for t in drawn.texts:
        weight = ' font-weight="bold"' if t.bold else ""
        parts.append(
            f'<text x="{t.x:.3f}" y="{t.y:.3f}" font-size="{t.size * 1.35:.2f}" '
            f'font-family="DejaVu Sans, Arial, sans-serif"{weight}>{escape(t.text)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts).encode()


def _pdf(drawn: Layout, label: LabelData) -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(drawn.width * mm, drawn.height * mm), invariant=True)
    pdf.setTitle(f"COI label {label.coi} {label.check}")
    pdf.setAuthor("vein2vein")
    height = drawn.height
    for r in drawn.rects:
        y = (height - r.y - r.h) * mm
        if r.filled:
            pdf.rect(r.x * mm, y, r.w * mm, r.h * mm, stroke=0, fill=1)
        else:
            pdf.setLineWidth(r.stroke * mm)
            pdf.rect(r.x * mm, y, r.w * mm, r.h * mm, stroke=1, fill=0)
    for t in drawn.texts:
        pdf.setFont("Helvetica-Bold" if t.bold else "Helvetica", t.size * 1.35 * mm)
        pdf.drawString(t.x * mm, (height - t.y) * mm, t.text)
    pdf.showPage()
    pdf.save()
    return out.getvalue()

"""Charts drawn on the server as inline SVG: nothing to fetch, nothing to run in the browser, and readable
without colour (every bar carries its number as text, and the SVG has a title for screen readers). Labels
are escaped here; the result is safe to put in a page as it is."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

BAR = "#0b5cad"
GOOD = "#1a6d2f"
TRACK = "#e6eaef"
INK = "#1b1f24"


def bars(title: str, rows: Sequence[tuple[str, float | None, str]], *, maximum: float | None = None,
         width: int = 640, label_width: int = 170, colour: str = BAR) -> Markup:
    """Horizontal bars: (label, value or None for "no data", the text shown after the bar)."""
    row_h, gap = 22, 6
    height = max(1, len(rows)) * (row_h + gap) + gap
    top = maximum if maximum is not None else max((v for _, v, _ in rows if v is not None), default=0) or 1
    track = width - label_width - 200
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>']
    for n, (label, value, shown) in enumerate(rows):
        y = gap + n * (row_h + gap)
        w = 0 if value is None or top <= 0 else max(0.0, min(1.0, value / top)) * track
        parts.append(f'<text x="0" y="{y + 15}" font-size="13" fill="{INK}">{escape(label[:28])}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{track}" height="{row_h}" fill="{TRACK}"/>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{row_h}" fill="{colour}"/>')
        parts.append(f'<text x="{label_width + track + 8}" y="{y + 15}" font-size="13" fill="{INK}">'
                     f'{escape(shown)}</text>')
    if not rows:
        parts.append(f'<text x="0" y="18" font-size="13" fill="{INK}">No data yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(title: str, rows: Sequence[tuple[str, float | None]], *, maximum: float | None = None,
            unit: str = "", width: int = 640, height: int = 180, colour: str = BAR) -> Markup:
    """Vertical columns over time (months): (label, value or None)."""
    n = max(1, len(rows))
    base, top_pad, left = height - 24, 16, 8
    slot = (width - left) / n
    top = maximum if maximum is not None else max((v for _, v in rows if v is not None), default=0) or 1
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>',
             f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="{INK}" stroke-width="1"/>']
    for i, (label, value) in enumerate(rows):
        x = left + i * slot
        h = 0 if value is None or top <= 0 else max(0.0, min(1.0, value / top)) * (base - top_pad)
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{base - h:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{h:.1f}" fill="{colour}"/>')
        shown = "–" if value is None else (f"{value:.0f}{unit}")
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{max(12.0, base - h - 4):.1f}" font-size="11" '
                     f'text-anchor="middle" fill="{INK}">{escape(shown)}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle" '
                     f'fill="{INK}">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{round(100 * rate)}%"

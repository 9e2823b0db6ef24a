"""Human-friendly durations for config files: "90s", "30m", "4h", "3d", "2w", "1d 12h" or ISO 8601."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_SECONDS = 100 * 365 * 86400  # longer is a typo; timedelta itself overflows at 999,999,999 days
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(value: Any) -> Any:
    """Turn "3d 4h" into a timedelta; leave anything else for pydantic (ISO 8601, seconds, timedelta)."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if not text or text.startswith("p") or text.startswith("-p"):
        return value  # ISO 8601, pydantic handles it
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _seconds(float(text), value)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if text[pos : match.start()].strip():
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    else:
        if pos and not text[pos:].strip():
            return _seconds(total, value)
    raise ValueError(f"invalid duration {value!r}: use e.g. '90s', '30m', '4h', '3d', '2w' or '1d 12h'")


def _seconds(total: float, value: str) -> timedelta:
    """timedelta(seconds=total), or ValueError (not OverflowError) past what a timedelta holds."""
    if total > MAX_SECONDS:
        raise ValueError(f"invalid duration {value!r}: longer than {MAX_SECONDS // (365 * 86400):,} years")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(out)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda td: td.total_seconds(), return_type=float, when_used="json"),
]

"""Vendors' severity names -> closeloop's. Each incident source has a table (`[webhooks.<vendor>] severities`,
defaults in the vendor's plugin settings) whose targets are severities the config knows: the built-in SEV1..SEV5,
`[severity.X]` and `[services.S.severity.X]`. A vendor name the table does not hold is never silently given
the default policy: the incident gets DEFAULT_SEVERITY *and* `unmapped_severity` (the vendor's name), which
the web app logs as a warning and the lifecycle records as a timeline note (activities/record_incident.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from closeloop.config import Config

log = structlog.get_logger("closeloop.web")

BUILTIN_SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4", "SEV5")
DEFAULT_SEVERITY = "SEV3"  # closeloop.models.Incident's default
MAX_NAME = 100
_SEV = re.compile(r"sev\s*-?\s*(\d)", re.IGNORECASE)


def known_severities(config: Config) -> set[str]:
    """The severities a policy can be resolved for: the built-in names and every `[severity.X]` section."""
    return {*BUILTIN_SEVERITIES, *config.severity, *(s for svc in config.services.values() for s in svc.severity)}


def merged(defaults: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """The defaults, with the config's entries added (an entry of the same name, in any case, replaces one)."""
    given_names = {name.strip().casefold() for name in given}
    return {**{k: v for k, v in defaults.items() if k.strip().casefold() not in given_names}, **given}


def table_problems(where: str, table: Mapping[str, str], known: set[str]) -> list[str]:
    """One line per entry whose target is no severity the config knows (for `closeloop config check`)."""
    return [f"{where}.{name}: unknown severity {target!r} (known: {', '.join(sorted(known))})"
            for name, target in table.items() if target not in known]


@dataclass(frozen=True)
class SeverityMap:
    """One source's table, looked up case-insensitively. A name that is itself a known severity ("SEV2",
    "sev 2") maps to it."""

    source: str
    table: Mapping[str, str]
    known: frozenset[str] = frozenset(BUILTIN_SEVERITIES)

    def lookup(self, name: str) -> str | None:
        wanted = name.strip().casefold()
        for vendor, ours in self.table.items():
            if vendor.strip().casefold() == wanted:
                return ours
        for ours in self.known:
            if ours.casefold() == wanted:
                return ours
        m = _SEV.fullmatch(name.strip())
        return f"SEV{m.group(1)}" if m and f"SEV{m.group(1)}" in self.known else None

    def resolve(self, name: str | None, otherwise: str = DEFAULT_SEVERITY) -> tuple[str, str | None]:
        """(closeloop's severity, the vendor's name when the table does not map it). No name: `otherwise`,
        nothing to flag; an unmapped name: `otherwise`, flagged (and logged)."""
        if name is None or not name.strip():
            return otherwise, None
        found = self.lookup(name)
        if found is not None:
            return found, None
        shown = name.strip()[:MAX_NAME]
        log.warning("severity_unmapped", source=self.source, severity=shown, given=otherwise)
        return otherwise, shown


class IncidentWebhookSettings(BaseModel):
    """`[webhooks.<vendor>]` of an incident source: `severities`, the vendor's name -> closeloop's severity. The
    config's entries are added to the vendor's defaults (DEFAULT_SEVERITIES); an entry replaces a default of the
    same name in any case."""

    model_config = ConfigDict(extra="forbid")
    DEFAULT_SEVERITIES: ClassVar[dict[str, str]] = {}

    severities: dict[str, str] = Field(default_factory=dict, validate_default=True,
                                       description="the vendor's severity name -> closeloop's")

    @field_validator("severities")
    @classmethod
    def _severities(cls, v: dict[str, str]) -> dict[str, str]:
        for name, target in v.items():
            if not name.strip() or not target.strip():
                raise ValueError("names and severities must be non-empty")
        return merged(cls.DEFAULT_SEVERITIES, v)

    def severity_map(self, source: str, config: Config) -> SeverityMap:
        return SeverityMap(source, dict(self.severities), frozenset(known_severities(config)))

    def problems(self, source: str, config: Config) -> list[str]:
        """The entries that name a severity the config does not know, one line each."""
        return table_problems(f"webhooks.{source}.severities", self.severities, known_severities(config))


S = TypeVar("S", bound=IncidentWebhookSettings)


def webhook_settings(config: Config, source: str, model: type[S]) -> S:
    """The validated `[webhooks.<source>]` section, or the defaults when the config has none."""
    found: Any = config.plugin_settings.get(("webhooks", source))
    return found if isinstance(found, model) else model()

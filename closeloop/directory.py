"""The people directory: who is who, who reports to whom, and their accounts elsewhere (handles).

The directory is a pluggable source, chosen by `[directory] source`:
- `config` (the default): the `[people.KEY]` tables of the config file;
- `csv`: a CSV file (`[directory] path`), e.g. an export of the HR system. Columns: `key`, `name`, `email`,
  and optionally `timezone`, `manager` (a key), `channels` (names in order, e.g. `slack email`) and
  `handle_<system>` (e.g. `handle_jira`, `handle_github`, `handle_slack`). Blank cells are unset.

A new source is a function `(settings, config people) -> dict[str, Person]` registered in DIRECTORY_SOURCES.
Pure once loaded: a Directory is a read-only mapping, safe to share between threads."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from closeloop.policy import ROLES

if TYPE_CHECKING:
    from closeloop.models import Person


class DirectoryError(Exception):
    """The directory cannot be read, or it is inconsistent; worded for the person who maintains it."""


class DirectorySettings(BaseModel):
    """`[directory]`: where the people come from."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["config", "csv"] = Field(default="config", description="config: [people.*]; csv: `path`")
    path: Path | None = Field(default=None, description="the CSV file (source = \"csv\"), relative to the working "
                                                        "directory")


class Directory(Mapping[str, "Person"]):
    """People by key, with the escalation chain (owner, manager, skip-level) each of them has."""

    def __init__(self, people: Mapping[str, Person]) -> None:
        self._people = dict(people)

    def __getitem__(self, key: str) -> Person:
        return self._people[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._people)

    def __len__(self) -> int:
        return len(self._people)

    def person(self, key: str) -> Person | None:
        return self._people.get(key)

    def chain_for(self, owner: str) -> dict[str, str | None]:
        """The escalation roles resolved for an owner: owner, manager, skip_level."""
        owner_entry = self._people.get(owner)
        manager = owner_entry.manager if owner_entry else None
        manager_entry = self._people.get(manager) if manager else None
        return {"owner": owner, "manager": manager, "skip_level": manager_entry.manager if manager_entry else None}

    def resolve_target(self, target: str, owner: str) -> str | None:
        """A role (owner, manager, skip_level) relative to `owner`, or a person key; None when nobody fills it."""
        if target in ROLES:
            return self.chain_for(owner)[target]
        return target if target in self._people else None

    def with_chains(self, keys: Iterable[str]) -> list[str]:
        """The known keys among `keys`, each followed by its manager and skip-level (once each, in order)."""
        out: dict[str, None] = {}
        for key in keys:
            if key not in self._people:
                continue
            out[key] = None
            chain = self.chain_for(key)
            for role in ("manager", "skip_level"):
                above = chain[role]
                if above and above in self._people:
                    out[above] = None
        return list(out)

    def problems(self) -> list[str]:
        """Unknown managers, unknown time zones and management cycles (a -> b -> a), one line each."""
        problems: list[str] = []
        for key, person in self._people.items():
            if person.manager and person.manager not in self._people:
                problems.append(f"people.{key}.manager: unknown person {person.manager!r}")
            try:
                ZoneInfo(person.timezone)
            except Exception:  # noqa: BLE001 - any failure means the name is unusable
                problems.append(f"people.{key}.timezone: unknown time zone {person.timezone!r}")
        reported: set[str] = set()
        for start in self._people:
            seen: list[str] = []
            current: str | None = start
            while current is not None and current in self._people and current not in seen:
                seen.append(current)
                current = self._people[current].manager
            if current is not None and current in seen and current not in reported:
                cycle = seen[seen.index(current):]
                reported.update(cycle)
                problems.append(f"people.{current}.manager: management cycle {' -> '.join([*cycle, current])}")
        return problems


# --------------------------------------------------------------------------- sources


def _from_config(settings: DirectorySettings, people: Mapping[str, Any]) -> dict[str, Person]:
    from closeloop.models import Person  # the models load when the directory does, not with the config

    return {key: Person(key=key, **(entry.model_dump() if isinstance(entry, BaseModel) else dict(entry)))
            for key, entry in people.items()}


def _from_csv(settings: DirectorySettings, people: Mapping[str, Any]) -> dict[str, Person]:
    from closeloop.models import Person

    if settings.path is None:
        raise DirectoryError("directory.path: a CSV directory needs the file's path")
    try:
        with settings.path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DirectoryError(f"directory.path: cannot read {settings.path}: {getattr(e, 'strerror', None) or e}") \
            from None
    except csv.Error as e:
        raise DirectoryError(f"{settings.path}: not valid CSV: {e}") from None
    out: dict[str, Person] = {}
    for line, row in enumerate(rows, start=2):
        cells = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        fields: dict[str, Any] = {k: v for k, v in cells.items() if v and not k.startswith("handle_")}
        fields["handles"] = {k.removeprefix("handle_"): v for k, v in cells.items() if k.startswith("handle_") and v}
        if "channels" in fields:  # "slack email", "slack,email" or "slack; email"
            fields["channels"] = [c for c in fields["channels"].replace(",", " ").replace(";", " ").split() if c]
        key = fields.get("key", "")
        if not key:
            raise DirectoryError(f"{settings.path}, line {line}: the key column is empty")
        if key in out:
            raise DirectoryError(f"{settings.path}, line {line}: {key!r} appears twice")
        try:
            out[key] = Person.model_validate(fields)
        except ValidationError as e:
            err = e.errors()[0]
            raise DirectoryError(f"{settings.path}, line {line}: {'.'.join(map(str, err['loc']))}: {err['msg']}") \
                from None
    return out


DirectorySource = Callable[[DirectorySettings, Mapping[str, Any]], "dict[str, Person]"]
DIRECTORY_SOURCES: dict[str, DirectorySource] = {"config": _from_config, "csv": _from_csv}


def load_directory(settings: DirectorySettings, config_people: Mapping[str, Any]) -> Directory:
    """The directory from its source; DirectoryError with one line when it cannot be read."""
    return Directory(DIRECTORY_SOURCES[settings.source](settings, config_people))

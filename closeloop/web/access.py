"""Who may see what in the web app. A person acts only as themself (every Update the web app runs carries the
signed-in person as its `by`/`reviewer`, and the workflow's validator decides whether that person may); a
manager also sees the work of everyone who reports to them, directly or below; an admin (`[web.auth] admins`)
sees everything. Pure functions over the directory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from closeloop.models import Person


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, with what they may see."""

    key: str
    name: str
    email: str
    admin: bool = False
    below: frozenset[str] = field(default_factory=frozenset)  # everyone reporting to them, directly or below

    @property
    def manager(self) -> bool:
        return bool(self.below)

    def sees_person(self, key: str) -> bool:
        return self.admin or key == self.key or key in self.below

    def sees_any(self, keys: Iterable[str]) -> bool:
        return self.admin or any(self.sees_person(k) for k in keys)

    def scope(self) -> list[str] | None:
        """The owners whose work the dashboard shows: None (everyone's) for an admin."""
        return None if self.admin else sorted({self.key, *self.below})


def reports_below(people: Mapping[str, Person], manager: str) -> frozenset[str]:
    """Everyone whose chain of managers reaches `manager` (a cycle in the directory is cut, not followed)."""
    children: dict[str, list[str]] = {}
    for key, person in people.items():
        if person.manager:
            children.setdefault(person.manager, []).append(key)
    found: set[str] = set()
    todo = list(children.get(manager, []))
    while todo:
        key = todo.pop()
        if key in found or key == manager:
            continue
        found.add(key)
        todo.extend(children.get(key, []))
    return frozenset(found)


def person_by_email(people: Mapping[str, Person], email: str) -> Person | None:
    """The directory's person with this email (case-insensitive), or None."""
    wanted = email.strip().lower()
    if not wanted:
        return None
    for person in people.values():
        if person.email.strip().lower() == wanted:
            return person
    return None


def viewer(people: Mapping[str, Person], key: str, admins: Iterable[str]) -> Viewer | None:
    person = people.get(key)
    if person is None:
        return None
    return Viewer(key=key, name=person.name, email=person.email, admin=key in set(admins),
                  below=reports_below(people, key))


def team_of(people: Mapping[str, Person], key: str) -> str:
    """The team a person's work is grouped under: their own `team`, else their manager's team name."""
    person = people.get(key)
    if person is None:
        return "(not in the directory)"
    if person.team:
        return person.team
    if person.manager:
        manager = people.get(person.manager)
        return f"{manager.name if manager else person.manager}'s team"
    return f"{person.name}'s team"

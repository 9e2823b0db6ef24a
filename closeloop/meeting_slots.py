"""Finding a meeting slot: pure functions of their arguments (no I/O, no wall clock), so workflows may
call them as well as activities.

Times go in as aware datetimes (naive ones are taken as UTC) and come out as aware UTC datetimes.
Working hours are wall-clock times in each person's own time zone; `zoneinfo` turns them into UTC
instants day by day, so daylight-saving changes land on the right day for each person.

The search works on intervals rather than on candidate slots: each attendee's working hours become a
sorted list of UTC intervals, the lists are intersected, everyone's busy time is merged and cut out,
and the first grid point that fits the meeting in what remains is the answer. The cost is linear in
the number of days and intervals, after sorting the busy intervals.

When no slot suits everyone, `best_slot` settles for the best one: it tries every grid slot inside the
owner's working hours and keeps the earliest that the owner can attend and that the most other attendees can
(inside their working hours, clear of their busy time), with the list of those who cannot.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from closeloop.integrations.base import Interval
from closeloop.models import Person
from closeloop.policy import MeetingPolicy, WorkingHours

__all__ = ["best_slot", "business_day_window", "pick_slot"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WEEKDAYS = (0, 1, 2, 3, 4)

Span = tuple[datetime, datetime]


def _as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `tz`. A wall time skipped by DST is read with the
    offset before the change (PEP 495, fold=0), so it lands as far after the change as it was into the gap."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _ceil_to_grid(value: datetime, step: timedelta) -> datetime:
    """Round up to the next multiple of `step` counted from the Unix epoch (so :00/:30 UTC for 30m)."""
    remainder = (value - _EPOCH) % step
    return value if not remainder else value + (step - remainder)


def business_day_window(
    not_before: datetime, business_days: int, tz: str = "UTC", days: Sequence[int] = _WEEKDAYS
) -> tuple[datetime, datetime]:
    """The search window from `not_before` to the end (midnight, local to `tz`) of the Nth business day
    strictly after the local day of `not_before`; `days` lists business weekdays (0=Monday .. 6=Sunday).

    Friday evening with N=1 gives Friday evening .. the end of Monday. N=0 ends the window at the end of
    `not_before`'s own day.
    """
    if business_days < 0:
        raise ValueError("business_days must not be negative")
    weekdays = set(days)
    if not weekdays or not weekdays <= set(range(7)):
        raise ValueError("days must list weekdays 0 (Monday) to 6 (Sunday)")
    zone = ZoneInfo(tz)
    start = _as_utc(not_before)
    day = start.astimezone(zone).date()
    counted = 0
    while counted < business_days:
        day += timedelta(days=1)
        counted += day.weekday() in weekdays
    return start, _local(day + timedelta(days=1), time(0), zone)


def _working_spans(person: Person, hours: WorkingHours, start: datetime, end: datetime) -> list[Span]:
    """`person`'s working hours as sorted UTC spans, clipped to [start, end)."""
    zone = ZoneInfo(person.timezone)
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    spans: list[Span] = []
    while day <= last:
        if day.weekday() in hours.days:
            lo, hi = max(_local(day, hours.start, zone), start), min(_local(day, hours.end, zone), end)
            if lo < hi:
                spans.append((lo, hi))
        day += timedelta(days=1)
    return spans


def _intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """Intersection of two sorted lists of disjoint spans."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _merge(spans: Iterable[Span]) -> list[Span]:
    """Sort and coalesce overlapping or touching spans, dropping empty ones."""
    out: list[Span] = []
    for lo, hi in sorted(s for s in spans if s[0] < s[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _subtract(free: list[Span], busy: list[Span]) -> list[Span]:
    """`free` minus `busy`; both sorted and disjoint. Busy spans are half-open, so touching is fine."""
    out: list[Span] = []
    j = 0
    for lo, hi in free:
        while j < len(busy) and busy[j][1] <= lo:
            j += 1
        k = j
        while k < len(busy) and busy[k][0] < hi:
            if busy[k][0] > lo:
                out.append((lo, busy[k][0]))
            lo = max(lo, busy[k][1])
            k += 1
        if lo < hi:
            out.append((lo, hi))
    return out


def pick_slot(
    *, attendees: list[Person], busy: dict[str, list[Interval]], not_before: datetime, policy: MeetingPolicy
) -> tuple[datetime, datetime] | None:
    """The earliest (start, end) in UTC of length `policy.duration`, starting on the `policy.slot_step`
    grid at or after `not_before`, ending within `policy.within_business_days` business days (counted in
    the first attendee's — the owner's — time zone), inside every attendee's working hours in their own
    time zone and clear of all their busy intervals. None when no such slot exists."""
    if not attendees:
        raise ValueError("pick_slot needs at least one attendee (the owner first)")
    if policy.duration <= timedelta(0) or policy.slot_step <= timedelta(0):
        raise ValueError("meeting duration and slot_step must be positive")
    hours = policy.working_hours
    start, end = business_day_window(
        not_before, policy.within_business_days, attendees[0].timezone, hours.days
    )
    start = _ceil_to_grid(start, policy.slot_step)

    free = _working_spans(attendees[0], hours, start, end)
    for person in attendees[1:]:
        free = _intersect(free, _working_spans(person, hours, start, end))
    keys = {p.key for p in attendees}
    taken = _merge(
        (_as_utc(iv.start), _as_utc(iv.end)) for key, ivs in busy.items() if key in keys for iv in ivs
    )
    for lo, hi in _subtract(free, taken):
        slot = _ceil_to_grid(lo, policy.slot_step)
        if slot + policy.duration <= hi:
            return slot, slot + policy.duration
    return None


def _fits(free: list[Span], lo: datetime, hi: datetime) -> bool:
    """Whether [lo, hi) lies inside one span of `free` (sorted, disjoint)."""
    i = bisect_right(free, (lo, _END_OF_TIME)) - 1
    return i >= 0 and free[i][0] <= lo and hi <= free[i][1]


_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def best_slot(
    *, attendees: list[Person], busy: dict[str, list[Interval]], not_before: datetime, policy: MeetingPolicy
) -> tuple[tuple[datetime, datetime], list[str]]:
    """The slot to book when `pick_slot` finds none for everyone, and the keys of the attendees who cannot
    make it (in the order given).

    The candidates are the `policy.slot_step` grid slots of `policy.duration` inside the owner's (the first
    attendee's) working hours within the same window as `pick_slot`. An attendee can make a slot when it lies
    inside their own working hours and clear of their busy time. The answer is the earliest candidate that the
    owner can make and that the most others can make. When the owner can make none (busy the whole window),
    the owner's busy time is set aside: the earliest candidate the most others can make, the owner listed among
    those who cannot. Should the owner's working hours hold no candidate at all (a meeting longer than the
    working day), the slot starts when the owner's first working hours do (or at `not_before`), and everyone
    it does not fit is listed. When a slot fits everyone this is `pick_slot`'s slot, and nobody is listed."""
    if not attendees:
        raise ValueError("best_slot needs at least one attendee (the owner first)")
    if policy.duration <= timedelta(0) or policy.slot_step <= timedelta(0):
        raise ValueError("meeting duration and slot_step must be positive")
    hours = policy.working_hours
    owner = attendees[0]
    start, end = business_day_window(not_before, policy.within_business_days, owner.timezone, hours.days)
    start = _ceil_to_grid(start, policy.slot_step)
    free: dict[str, list[Span]] = {}
    for person in attendees:
        if person.key not in free:
            taken = _merge((_as_utc(iv.start), _as_utc(iv.end)) for iv in busy.get(person.key, []))
            free[person.key] = _subtract(_working_spans(person, hours, start, end), taken)
    owner_hours = _working_spans(owner, hours, start, end)
    others = [p.key for p in attendees[1:] if p.key != owner.key]

    best: tuple[int, int] | None = None
    chosen: tuple[datetime, datetime] | None = None
    for lo, hi in owner_hours:
        slot = _ceil_to_grid(lo, policy.slot_step)
        while slot + policy.duration <= hi:
            stop = slot + policy.duration
            score = (int(_fits(free[owner.key], slot, stop)),
                     sum(_fits(free[key], slot, stop) for key in others))
            if best is None or score > best:
                best, chosen = score, (slot, stop)
            slot += policy.slot_step
    if chosen is None:
        first = _ceil_to_grid(owner_hours[0][0], policy.slot_step) if owner_hours else start
        chosen = (first, first + policy.duration)
    lo, hi = chosen
    unavailable = [p.key for p in attendees if not _fits(free[p.key], lo, hi)]
    return chosen, list(dict.fromkeys(unavailable))


def next_working_time(at: datetime, tz: str, hours: WorkingHours) -> datetime:
    """`at` if it falls inside the working hours of a working day in `tz`, else the start of the next working
    hours there (UTC). A reminder due at 23:00 goes out at 09:00; one due on Saturday, on Monday at 09:00."""
    zone = ZoneInfo(tz)
    moment = _as_utc(at)
    day = moment.astimezone(zone).date()
    for _ in range(8):  # a working day comes within a week (`days` is never empty)
        if day.weekday() in hours.days:
            opens, closes = _local(day, hours.start, zone), _local(day, hours.end, zone)
            if moment < closes:
                return max(moment, opens)
        day += timedelta(days=1)
    raise ValueError("working_hours.days lists no weekday")

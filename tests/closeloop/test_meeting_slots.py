"""pick_slot, best_slot and business_day_window: exact UTC answers across time zones, weekends and DST changes.

Reference points in March 2026 (working hours 09:00-17:00 local):
  until 2026-03-08   Berlin 08-16 UTC, London 09-17 UTC, New York 14-22 UTC  -> shared 14:00-16:00 UTC
  2026-03-09..27     (US on EDT)                          New York 13-21 UTC  -> shared 13:00-16:00 UTC
  from 2026-03-30    Berlin 07-15 UTC, London 08-16 UTC, New York 13-21 UTC  -> shared 13:00-15:00 UTC
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from closeloop.integrations.base import Interval
from closeloop.meeting_slots import best_slot, business_day_window, next_working_time, pick_slot
from closeloop.models import Person
from closeloop.policy import MeetingPolicy, WorkingHours

UTC = UTC
BERLIN = Person(key="berlin", name="Bea", email="bea@example.com", timezone="Europe/Berlin")
LONDON = Person(key="london", name="Lou", email="lou@example.com", timezone="Europe/London")
NEW_YORK = Person(key="ny", name="Nia", email="nia@example.com", timezone="America/New_York")
TOKYO = Person(key="tokyo", name="Taro", email="taro@example.com", timezone="Asia/Tokyo")
KOLKATA = Person(key="kolkata", name="Kiran", email="kiran@example.com", timezone="Asia/Kolkata")
TRIO = [BERLIN, NEW_YORK, LONDON]


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def iv(start: datetime, end: datetime) -> Interval:
    return Interval(start=start, end=end)


def slot(
    attendees: list[Person], not_before: datetime, busy: dict[str, list[Interval]] | None = None, **policy: object
) -> tuple[datetime, datetime] | None:
    found = pick_slot(attendees=attendees, busy=busy or {}, not_before=not_before,
                      policy=MeetingPolicy.model_validate(policy))
    if found is not None:
        assert all(t.tzinfo is UTC for t in found)
    return found


# --------------------------------------------------------------------------- business_day_window


def test_window_skips_the_weekend() -> None:
    friday_evening = at(2026, 2, 27, 18)
    assert business_day_window(friday_evening, 1) == (friday_evening, at(2026, 3, 3))
    assert business_day_window(friday_evening, 5) == (friday_evening, at(2026, 3, 7))


def test_window_ends_at_local_midnight_across_dst() -> None:
    # Berlin: Monday 2026-03-30 ends at 24:00 CEST = 22:00 UTC (the Friday before was on CET).
    assert business_day_window(at(2026, 3, 27, 12), 1, "Europe/Berlin")[1] == at(2026, 3, 30, 22)
    # New York: Monday 2026-03-09 ends at 24:00 EDT = 04:00 UTC next day.
    assert business_day_window(at(2026, 3, 6, 12), 1, "America/New_York")[1] == at(2026, 3, 10, 4)


def test_window_counts_business_days_in_the_given_zone_and_days() -> None:
    # Friday 23:30 UTC is already Saturday in Berlin; Sunday-Thursday business week.
    start = at(2026, 2, 27, 23, 30)
    assert business_day_window(start, 1, "Europe/Berlin", [6, 0, 1, 2, 3]) == (start, at(2026, 3, 1, 23))
    assert business_day_window(start, 0, "UTC") == (start, at(2026, 2, 28))
    with pytest.raises(ValueError):
        business_day_window(start, -1)
    with pytest.raises(ValueError):
        business_day_window(start, 1, days=[])


# --------------------------------------------------------------------------- pick_slot


def test_three_zones_meet_in_the_narrow_shared_window() -> None:
    assert slot(TRIO, at(2026, 3, 2)) == (at(2026, 3, 2, 14), at(2026, 3, 2, 15))
    # The shared window is two hours long: a two-hour meeting fits exactly, 2.5 hours never does.
    assert slot(TRIO, at(2026, 3, 2), duration=timedelta(hours=2)) == (at(2026, 3, 2, 14), at(2026, 3, 2, 16))
    long = timedelta(hours=2, minutes=30)
    assert slot(TRIO, at(2026, 3, 2), duration=long, within_business_days=4) is None
    # ...until New York moves to EDT: five business days reach Monday 2026-03-09 (13:00-16:00 UTC shared).
    assert slot(TRIO, at(2026, 3, 2), duration=long) == (at(2026, 3, 9, 13), at(2026, 3, 9, 15, 30))
    # Attendee order only matters for the window's time zone, not the slot.
    assert slot([LONDON, NEW_YORK, BERLIN], at(2026, 3, 2)) == (at(2026, 3, 2, 14), at(2026, 3, 2, 15))


def test_resolved_on_friday_evening_gives_a_monday_slot() -> None:
    friday_evening = at(2026, 2, 27, 18)
    assert slot(TRIO, friday_evening) == (at(2026, 3, 2, 14), at(2026, 3, 2, 15))
    assert slot([LONDON], at(2026, 2, 27, 17, 30)) == (at(2026, 3, 2, 9), at(2026, 3, 2, 10))


def test_busy_intervals_push_the_slot_later() -> None:
    monday = at(2026, 3, 2)
    ny_busy = {"ny": [iv(at(2026, 3, 2, 14), at(2026, 3, 2, 14, 30))]}
    assert slot(TRIO, monday, ny_busy) == (at(2026, 3, 2, 14, 30), at(2026, 3, 2, 15, 30))
    # Berlin busy until 15:30 UTC leaves 30 minutes before Berlin's 16:00 UTC end: on to Tuesday.
    berlin_busy = {"berlin": [iv(at(2026, 3, 2, 14), at(2026, 3, 2, 15, 30))]}
    assert slot(TRIO, monday, berlin_busy) == (at(2026, 3, 3, 14), at(2026, 3, 3, 15))
    # Overlapping, unsorted, naive (taken as UTC) and other people's intervals; touching ends are fine.
    mixed = {
        "london": [
            iv(at(2026, 3, 2, 14, 30), at(2026, 3, 2, 15)),
            iv(datetime(2026, 3, 2, 13), datetime(2026, 3, 2, 14, 45)),
        ],
        "ny": [iv(at(2026, 3, 2, 16), at(2026, 3, 2, 17))],
        "someone-else": [iv(at(2026, 3, 2), at(2026, 3, 9))],
    }
    assert slot(TRIO, monday, mixed) == (at(2026, 3, 2, 15), at(2026, 3, 2, 16))
    # Busy time given in a local zone counts at its UTC instant: 09:00-10:00 EST is 14:00-15:00 UTC.
    ny = ZoneInfo("America/New_York")
    local = {"ny": [iv(datetime(2026, 3, 2, 9, tzinfo=ny), datetime(2026, 3, 2, 10, tzinfo=ny))]}
    assert slot(TRIO, monday, local) == (at(2026, 3, 2, 15), at(2026, 3, 2, 16))


def test_no_slot_within_the_window_is_none() -> None:
    # Tokyo's 00:00-08:00 UTC never meets New York's 14:00-22:00 UTC.
    assert slot([NEW_YORK, TOKYO], at(2026, 3, 2)) is None
    # One business day after Friday evening, and London is busy all Monday.
    busy = {"london": [iv(at(2026, 3, 2), at(2026, 3, 3))]}
    assert slot([LONDON], at(2026, 2, 27, 18), busy, within_business_days=1) is None
    assert slot([LONDON], at(2026, 2, 27, 18), busy, within_business_days=2) == (at(2026, 3, 3, 9), at(2026, 3, 3, 10))
    # Business days are counted in the owner's (first attendee's) zone. With 08:00-20:00 hours Tokyo and
    # New York share 23:00-01:00 UTC, which is already the next day in Tokyo: the first shared slot after
    # Friday evening is Monday 18:00 in New York, Tuesday 08:00 in Tokyo.
    long_days = WorkingHours(start=time(8), end=time(20))
    ny_owner = slot([NEW_YORK, TOKYO], at(2026, 2, 27, 18), within_business_days=1, working_hours=long_days)
    assert ny_owner == (at(2026, 3, 2, 23), at(2026, 3, 3))
    assert slot([TOKYO, NEW_YORK], at(2026, 2, 27, 18), within_business_days=1, working_hours=long_days) is None
    assert slot([TOKYO, NEW_YORK], at(2026, 2, 27, 18), within_business_days=2, working_hours=long_days) == (
        at(2026, 3, 2, 23), at(2026, 3, 3),
    )


def test_us_dst_change_moves_the_new_york_window() -> None:
    # Week before: 14:00 UTC. After 2026-03-08 New York is on EDT and starts at 13:00 UTC.
    assert slot(TRIO, at(2026, 3, 6, 18)) == (at(2026, 3, 9, 13), at(2026, 3, 9, 14))
    ny_busy = {"ny": [iv(at(2026, 3, 9, 13), at(2026, 3, 9, 14, 30))]}
    assert slot(TRIO, at(2026, 3, 6, 18), ny_busy) == (at(2026, 3, 9, 14, 30), at(2026, 3, 9, 15, 30))


def test_eu_dst_change_narrows_the_shared_window() -> None:
    # From 2026-03-30 Berlin ends at 15:00 UTC, so what fit on 2026-03-09 no longer does that Monday.
    ny_busy = {"ny": [iv(at(2026, 3, 30, 13), at(2026, 3, 30, 14, 30))]}
    assert slot(TRIO, at(2026, 3, 27, 18)) == (at(2026, 3, 30, 13), at(2026, 3, 30, 14))
    assert slot(TRIO, at(2026, 3, 27, 18), ny_busy) == (at(2026, 3, 31, 13), at(2026, 3, 31, 14))
    assert slot(TRIO, at(2026, 3, 27, 18), duration=timedelta(hours=3)) is None


def test_dst_day_itself_uses_the_new_offset() -> None:
    every_day = WorkingHours(days=[0, 1, 2, 3, 4, 5, 6])
    # London springs forward on Sunday 2026-03-29: Saturday starts 09:00 UTC, Sunday 08:00 UTC.
    assert slot([LONDON], at(2026, 3, 28), working_hours=every_day) == (at(2026, 3, 28, 9), at(2026, 3, 28, 10))
    assert slot([LONDON], at(2026, 3, 29), working_hours=every_day) == (at(2026, 3, 29, 8), at(2026, 3, 29, 9))
    # A start inside the skipped hour (01:00-02:00 local) shifts forward by the gap: 01:30 -> 02:30 BST,
    # i.e. 01:30 UTC; 03:00 BST is 02:00 UTC. Only 30 minutes of working time that night.
    night = WorkingHours(start=time(1, 30), end=time(3, 0), days=[6])
    assert slot([LONDON], at(2026, 3, 29), working_hours=night, duration=timedelta(minutes=30)) == (
        at(2026, 3, 29, 1, 30), at(2026, 3, 29, 2),
    )
    # An hour only fits the next (ordinary, BST) Sunday: 01:30-03:00 BST is 00:30-02:00 UTC.
    assert slot([LONDON], at(2026, 3, 29), working_hours=night, duration=timedelta(hours=1)) == (
        at(2026, 4, 5, 0, 30), at(2026, 4, 5, 1, 30),
    )


def test_not_before_is_rounded_up_to_the_utc_grid() -> None:
    assert slot([LONDON], at(2026, 3, 2, 10, 7)) == (at(2026, 3, 2, 10, 30), at(2026, 3, 2, 11, 30))
    assert slot([LONDON], at(2026, 3, 2, 10)) == (at(2026, 3, 2, 10), at(2026, 3, 2, 11))
    assert slot([LONDON], at(2026, 3, 2, 10, 7), slot_step=timedelta(minutes=15)) == (
        at(2026, 3, 2, 10, 15), at(2026, 3, 2, 11, 15),
    )
    # Kolkata (UTC+05:30) starts work at 03:30 UTC: on the half-hour grid, but not on the hourly one.
    assert slot([KOLKATA], at(2026, 3, 2)) == (at(2026, 3, 2, 3, 30), at(2026, 3, 2, 4, 30))
    assert slot([KOLKATA], at(2026, 3, 2), slot_step=timedelta(hours=1)) == (at(2026, 3, 2, 4), at(2026, 3, 2, 5))
    # An aware not_before in another zone: 10:07 in Berlin is 09:07 UTC.
    berlin_time = datetime(2026, 3, 2, 10, 7, tzinfo=ZoneInfo("Europe/Berlin"))
    assert slot([LONDON], berlin_time) == (at(2026, 3, 2, 9, 30), at(2026, 3, 2, 10, 30))
    # A busy block ending off-grid rounds the next start up too.
    busy = {"london": [iv(at(2026, 3, 2, 9), at(2026, 3, 2, 9, 40))]}
    assert slot([LONDON], at(2026, 3, 2, 9), busy) == (at(2026, 3, 2, 10), at(2026, 3, 2, 11))


def test_needs_an_attendee() -> None:
    with pytest.raises(ValueError):
        slot([], at(2026, 3, 2))


# --------------------------------------------------------------------------- next_working_time


def test_next_working_time_in_the_recipients_own_zone() -> None:
    hours = WorkingHours()  # 09:00-17:00, Monday to Friday
    tuesday_noon_london = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert next_working_time(tuesday_noon_london, "Europe/London", hours) == tuesday_noon_london
    # 23:00 UTC on Tuesday is 18:00 in New York: after hours, so Wednesday 09:00 there (14:00 UTC)
    assert next_working_time(datetime(2026, 12, 1, 23, 0, tzinfo=UTC), "America/New_York", hours) == \
        datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    # 06:00 UTC on Tuesday is 15:00 in Tokyo: inside its hours
    assert next_working_time(datetime(2026, 12, 1, 6, 0, tzinfo=UTC), "Asia/Tokyo", hours) == \
        datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    # Friday 17:00 in Berlin is closed: Monday 09:00 Berlin (08:00 UTC in winter)
    assert next_working_time(datetime(2026, 12, 4, 16, 0, tzinfo=UTC), "Europe/Berlin", hours) == \
        datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    # Before opening on a working day: that day's opening
    assert next_working_time(datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "UTC", hours) == \
        datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    weekends = WorkingHours(days=[5, 6])
    assert next_working_time(datetime(2026, 12, 1, 12, 0, tzinfo=UTC), "UTC", weekends) == \
        datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- best_slot


def best(
    attendees: list[Person], not_before: datetime, busy: dict[str, list[Interval]] | None = None, **policy: object
) -> tuple[tuple[datetime, datetime], list[str]]:
    found, unavailable = best_slot(attendees=attendees, busy=busy or {}, not_before=not_before,
                                   policy=MeetingPolicy.model_validate(policy))
    assert all(t.tzinfo is UTC for t in found)
    return found, unavailable


def test_best_slot_is_pick_slot_when_everyone_fits() -> None:
    monday = at(2026, 3, 2, 6)
    busy = {"ny": [iv(at(2026, 3, 2, 14), at(2026, 3, 2, 14, 30))]}
    assert best(TRIO, monday, busy) == (slot(TRIO, monday, busy), [])


def test_best_slot_leaves_out_the_fewest_and_says_who() -> None:
    # London (the owner) and Berlin and New York; Berlin is busy the whole window, New York only on Monday.
    friday = at(2026, 2, 27, 18)
    busy = {"berlin": [iv(at(2026, 3, 2), at(2026, 3, 4))],
            "ny": [iv(at(2026, 3, 2), at(2026, 3, 3))]}
    people = [LONDON, BERLIN, NEW_YORK]
    assert slot(people, friday, busy, within_business_days=2) is None
    # Tuesday 14:00 UTC: the first slot London and New York share (New York starts at 14:00 UTC).
    assert best(people, friday, busy, within_business_days=2) == ((at(2026, 3, 3, 14), at(2026, 3, 3, 15)),
                                                                    ["berlin"])


def test_best_slot_counts_working_hours_as_unavailable_time() -> None:
    # Tokyo's working day never meets New York's: the owner's earliest slot, Tokyo left out.
    assert best([NEW_YORK, TOKYO], at(2026, 3, 2, 6)) == ((at(2026, 3, 2, 14), at(2026, 3, 2, 15)), ["tokyo"])


def test_best_slot_takes_the_earliest_of_equals_and_the_owner_first() -> None:
    monday = at(2026, 3, 2, 6)
    # Two of three others can come at 09:00 (Berlin's 10:00), London's start; later the owner alone is free.
    busy = {"london": [iv(at(2026, 3, 2, 10), at(2026, 3, 7))], "ny": [iv(at(2026, 3, 2), at(2026, 3, 7))]}
    owner = Person(key="owner", name="O", email="o@example.com", timezone="Europe/London")
    found, unavailable = best([owner, LONDON, BERLIN, NEW_YORK], monday, busy, within_business_days=4)
    assert found == (at(2026, 3, 2, 9), at(2026, 3, 2, 10)) and unavailable == ["ny"]
    # The owner busy at 09:00 Monday: a slot the owner can make wins over one more attendee.
    busy["owner"] = [iv(at(2026, 3, 2, 9), at(2026, 3, 2, 10))]
    found, unavailable = best([owner, LONDON, BERLIN, NEW_YORK], monday, busy, within_business_days=4)
    assert found == (at(2026, 3, 2, 10), at(2026, 3, 2, 11)) and unavailable == ["london", "ny"]


def test_best_slot_with_the_owner_busy_all_window_books_the_most_others() -> None:
    friday = at(2026, 2, 27, 18)
    busy = {"london": [iv(at(2026, 3, 2), at(2026, 3, 3))], "berlin": [iv(at(2026, 3, 2, 8), at(2026, 3, 2, 12))]}
    found, unavailable = best([LONDON, BERLIN], friday, busy, within_business_days=1)
    # London's Monday 09-17 UTC; Berlin (08-16 UTC) is free from 12:00 UTC.
    assert found == (at(2026, 3, 2, 12), at(2026, 3, 2, 13)) and unavailable == ["london"]


def test_best_slot_for_a_meeting_longer_than_the_working_day() -> None:
    found, unavailable = best([LONDON, BERLIN], at(2026, 3, 2, 6), duration="9h")
    assert found == (at(2026, 3, 2, 9), at(2026, 3, 2, 18)) and unavailable == ["london", "berlin"]


def test_best_slot_needs_an_attendee() -> None:
    with pytest.raises(ValueError):
        best_slot(attendees=[], busy={}, not_before=at(2026, 3, 2), policy=MeetingPolicy())

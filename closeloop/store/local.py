"""What the built-in local adapters keep in closeloop's own database: the local tracker's tickets and their
comments, the log notifier's outbox, and the local calendar's busy blocks and meetings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, cast, func, or_, select, text

from closeloop.store.database import Database
from closeloop.store.tables import BusyBlockRow, MeetingRow, NotificationRow, TicketCommentRow, TicketRow


class LocalAdapterStorage:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ local tracker

    def ticket_by_marker(self, marker: str) -> TicketRow | None:
        with self.db.session() as s:
            return s.scalar(select(TicketRow).where(TicketRow.marker == marker))

    def create_ticket(self, *, marker: str, title: str, body: str, assignee: str, priority: str,
                      due_at: datetime) -> TicketRow:
        """Create the ticket for `marker`, or return the one that exists (unique marker)."""
        # Keys follow the highest one ever given (never reused, even after a ticket is deleted). Each failed
        # attempt means another ticket was committed meanwhile, so the number moves on; allow as many
        # attempts as there may be concurrent creators.
        number = cast(func.substr(TicketRow.key, len("LOCAL-") + 1), Integer)
        for _ in range(100):
            with self.db.session() as s:
                n = (s.scalar(select(func.max(number))) or 0) + 1
            row = TicketRow(key=f"LOCAL-{n}", marker=marker, title=title, body=body, assignee=assignee,
                            priority=priority, due_at=due_at)
            if self.db.insert_once(row):
                return row
            existing = self.ticket_by_marker(marker)
            if existing:
                return existing
        raise RuntimeError("could not allocate a local ticket key")

    def tickets(self, keys: list[str] | None = None) -> list[TicketRow]:
        with self.db.session() as s:
            q = select(TicketRow).order_by(TicketRow.created_at, TicketRow.key)
            if keys is not None:
                q = q.where(TicketRow.key.in_(keys))
            return list(s.scalars(q))

    def set_ticket_status(self, key: str, status: str, resolution: str = "") -> TicketRow:
        with self.db.session() as s:
            row = s.get(TicketRow, key)
            if row is None:
                raise KeyError(key)
            row.status, row.resolution = status, resolution
            return row

    def add_ticket_comment(self, ticket_key: str, body: str, idempotency_key: str) -> bool:
        return self.db.insert_once(TicketCommentRow(ticket_key=ticket_key, body=body, idempotency_key=idempotency_key))

    def ticket_comments(self, ticket_key: str) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(TicketCommentRow.body).where(TicketCommentRow.ticket_key == ticket_key)
                                  .order_by(TicketCommentRow.id)))

    # ------------------------------------------------------------------ outbox

    def record_notification(self, *, key: str, kind: str, recipient: str, subject: str, body: str, at: datetime,
                            postmortem_id: str, item_id: str | None, channel: str = "log") -> bool:
        """True if this is the first delivery of `key`; False if it was already delivered."""
        return self.db.insert_once(
            NotificationRow(key=key, kind=kind, recipient=recipient, subject=subject, body=body, at=at,
                            postmortem_id=postmortem_id, item_id=item_id, channel=channel)
        )

    def notifications_by_key(self, keys: list[str]) -> list[NotificationRow]:
        """The outbox's rows of these notification keys."""
        if not keys:
            return []
        with self.db.session() as s:
            return list(s.scalars(select(NotificationRow).where(NotificationRow.key.in_(keys))
                                  .order_by(NotificationRow.at, NotificationRow.id)))

    def notifications(self, postmortem_id: str | None = None) -> list[NotificationRow]:
        with self.db.session() as s:
            q = select(NotificationRow).order_by(NotificationRow.at, NotificationRow.id)
            if postmortem_id:
                # the postmortem's own notifications and its action items' ("<postmortem id>/<item id>"),
                # not those of another postmortem whose id merely starts the same ("…/P1" vs "…/P10")
                q = q.where(or_(NotificationRow.postmortem_id == postmortem_id,
                                NotificationRow.postmortem_id.startswith(postmortem_id + "/", autoescape=True)))
            return list(s.scalars(q))

    # ------------------------------------------------------------------ local calendar

    def busy_intervals(self, people: list[str], start: datetime, end: datetime,
                       except_key: str | None = None) -> dict[str, list[tuple[datetime, datetime]]]:
        """Per person, the meetings (but the one booked under `except_key`) and busy blocks in [start, end)."""
        out: dict[str, list[tuple[datetime, datetime]]] = {p: [] for p in people}
        with self.db.session() as s:
            for m in s.scalars(select(MeetingRow).where(MeetingRow.start < end, MeetingRow.end > start)):
                if except_key is not None and m.idempotency_key == except_key:
                    continue
                for p in m.attendees:
                    if p in out:
                        out[p].append((m.start, m.end))
            for b in s.scalars(select(BusyBlockRow).where(BusyBlockRow.person.in_(people),
                                                          BusyBlockRow.start < end, BusyBlockRow.end > start)):
                out[b.person].append((b.start, b.end))
        return out

    def add_busy_block(self, person: str, start: datetime, end: datetime, note: str = "") -> None:
        with self.db.session() as s:
            s.add(BusyBlockRow(person=person, start=start, end=end, note=note))

    def meeting_by_key(self, idempotency_key: str) -> MeetingRow | None:
        with self.db.session() as s:
            return s.scalar(select(MeetingRow).where(MeetingRow.idempotency_key == idempotency_key))

    def move_meeting(self, idempotency_key: str, *, start: datetime, end: datetime, attendees: list[str],
                     free: list[str]) -> bool | None:
        """Move the meeting booked under the key to [start, end) with these attendees, atomically checking that
        `free` have no other meeting or busy block then. None: nothing is booked under the key; False: someone
        of `free` is busy then (nothing changed); True: moved (or already there)."""
        with self.db.write_lock, self.db.session() as s:
            row = s.scalar(select(MeetingRow).where(MeetingRow.idempotency_key == idempotency_key))
            if row is None:
                return None
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(7041)"))
            clash = any(
                set(m.attendees) & set(free)
                for m in s.scalars(select(MeetingRow).where(MeetingRow.start < end, MeetingRow.end > start,
                                                            MeetingRow.idempotency_key != idempotency_key))
            ) or s.scalar(select(func.count()).select_from(BusyBlockRow).where(
                BusyBlockRow.person.in_(free), BusyBlockRow.start < end, BusyBlockRow.end > start))
            if clash:
                return False
            row.start, row.end, row.attendees = start, end, list(attendees)
            return True

    def cancel_meeting(self, idempotency_key: str) -> bool:
        """Remove the meeting booked under the key (its slot is free again); False when there is none."""
        with self.db.write_lock, self.db.session() as s:
            row = s.scalar(select(MeetingRow).where(MeetingRow.idempotency_key == idempotency_key))
            if row is None:
                return False
            s.delete(row)
            return True

    def book_meeting(self, *, idempotency_key: str, title: str, start: datetime, end: datetime,
                     attendees: list[str], require_free: bool = False,
                     free: list[str] | None = None) -> int | None:
        """Book once per key. With `require_free`, check-and-book is atomic: None when an attendee (of `free`,
        when given: those expected to attend) got busy in [start, end) meanwhile (a concurrent lifecycle took
        the slot), so the caller picks again."""
        with self.db.write_lock, self.db.session() as s:
            existing = s.scalar(select(MeetingRow.id).where(MeetingRow.idempotency_key == idempotency_key))
            if existing is not None:
                return existing
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(7041)"))  # serialise bookings across workers
            if require_free:
                must = attendees if free is None else free
                clash = any(
                    set(m.attendees) & set(must)
                    for m in s.scalars(select(MeetingRow).where(MeetingRow.start < end, MeetingRow.end > start))
                ) or s.scalar(select(func.count()).select_from(BusyBlockRow).where(
                    BusyBlockRow.person.in_(must), BusyBlockRow.start < end, BusyBlockRow.end > start))
                if clash:
                    return None
            row = MeetingRow(idempotency_key=idempotency_key, title=title, start=start, end=end, attendees=attendees)
            s.add(row)
            s.flush()
            return row.id

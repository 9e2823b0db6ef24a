"""The store: every read and write closeloop makes to its database, by concern. One `Database` (engine and
sessions) shared by the records of each lifecycle (`records`), what the built-in local adapters keep (`local`),
the webhook delivery log (`deliveries`), the cross-process rate limits (`rate_limits`), the incident inbox the web
app answers from (`inbox`), what each delivery channel did with a notification (`channel_deliveries`), what the
web app's pages read and write (`views`: closeloop.readmodel.WebViews) and the clean-up of what is past its
retention (`retention`). Blocking; activities call it from their thread pool. Writes that may be retried are
idempotent by key."""

from __future__ import annotations

from sqlalchemy import Engine, text

from closeloop.store.database import Database
from closeloop.store.deliveries import DeliveryLog
from closeloop.store.inbox import IncidentInbox
from closeloop.store.insights import StoreInsights
from closeloop.store.local import LocalAdapterStorage
from closeloop.store.outbox import ChannelDeliveries
from closeloop.store.rate_limits import RateLimits
from closeloop.store.records import LifecycleRecords
from closeloop.store.retention import Retention
from closeloop.store.views import Views


class Store:
    """The database on `url` (migrated to the newest revision first unless `migrate=False`), by concern.
    `pool_size`, `max_overflow`: the connection pool on PostgreSQL (`[store]`, `StoreSettings.pool`)."""

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        self.db = Database(url, migrate=migrate, pool_size=pool_size, max_overflow=max_overflow)
        self.records = LifecycleRecords(self.db)
        self.local = LocalAdapterStorage(self.db)
        self.deliveries = DeliveryLog(self.db)
        self.rate_limits = RateLimits(self.db)
        self.retention = Retention(self.db)
        self.inbox = IncidentInbox(self.db)
        self.channel_deliveries = ChannelDeliveries(self.db)
        self.insights = StoreInsights(self.db)
        self.views = Views(self.db)

    @property
    def engine(self) -> Engine:
        return self.db.engine

    def ping(self) -> None:
        """One `SELECT 1`: raises when the database cannot be reached (the readiness checks)."""
        with self.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.db.close()

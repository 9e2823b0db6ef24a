"""Each concern of the store on its own, from the migrated `store` fixture (tests/conftest.py: SQLite and
PostgreSQL)."""

from __future__ import annotations

import pytest

from closeloop.store.deliveries import DeliveryLog
from closeloop.store.inbox import IncidentInbox
from closeloop.store.local import LocalAdapterStorage
from closeloop.store.rate_limits import RateLimits
from closeloop.store.records import LifecycleRecords
from closeloop.store.store import Store


@pytest.fixture
def records(store: Store) -> LifecycleRecords:
    return store.records


@pytest.fixture
def local(store: Store) -> LocalAdapterStorage:
    return store.local


@pytest.fixture
def deliveries(store: Store) -> DeliveryLog:
    return store.deliveries


@pytest.fixture
def rate_limits(store: Store) -> RateLimits:
    return store.rate_limits


@pytest.fixture
def inbox(store: Store) -> IncidentInbox:
    return store.inbox

"""DeliveryLog against real databases (the `deliveries` fixture): each delivery is applied once."""

from __future__ import annotations

from closeloop.store.deliveries import DeliveryLog


def test_record_delivery_once(deliveries: DeliveryLog) -> None:
    assert deliveries.record_delivery("github", "d-1") is True
    assert deliveries.record_delivery("github", "d-1") is False
    assert deliveries.record_delivery("jira", "d-1") is True  # delivery ids are per source


def test_delivery_seen_only_after_it_was_recorded(deliveries: DeliveryLog) -> None:
    long_id = "x" * 250  # stored cut at 200 characters: seen under the same cut
    assert deliveries.delivery_seen("github", "d-2") is False
    assert deliveries.delivery_seen("github", long_id) is False
    assert deliveries.record_delivery("github", "d-2") is True
    assert deliveries.record_delivery("github", long_id) is True
    assert deliveries.delivery_seen("github", "d-2") is True
    assert deliveries.delivery_seen("github", long_id) is True
    assert deliveries.delivery_seen("jira", "d-2") is False

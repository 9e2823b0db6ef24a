"""The local publisher: Markdown + HTML files, written atomically, recorded in the store, idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from closeloop.integrations.base import Document, IntegrationError
from closeloop.integrations.local.publisher import LocalPublisher, safe_name
from closeloop.models import Incident
from closeloop.store.store import Store


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'closeloop.db'}")
    try:
        yield s
    finally:
        s.close()


def _incident() -> Incident:
    return Incident(source="api", external_id="INC-7", title="Queue backlog",
                    started_at=datetime(2026, 11, 22, 14, 5, tzinfo=UTC))


def _document(postmortem_id: str, version: int = 1) -> Document:
    return Document(postmortem_id=postmortem_id, title="Postmortem: Queue backlog",
                    markdown=f"# Postmortem v{version}\n", html=f"<h1>Postmortem v{version}</h1>\n")


def test_safe_name() -> None:
    assert safe_name("postmortem/api/INC-7") == "postmortem_api_INC-7"
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert "/" not in safe_name("a/b\\c d")


def test_publish_writes_files_and_records_document(local_store: Store, tmp_path: Path) -> None:
    incident = _incident()
    pm_id = incident.workflow_id
    local_store.records.upsert_postmortem(pm_id, incident, owner="alice", stage="in_review", stalled=False,
                                          stage_due_at=None)
    out = tmp_path / "published"
    publisher = LocalPublisher(local_store, out)
    assert publisher.name == "local"

    ref = publisher.publish(_document(pm_id), f"{pm_id}/publish")

    html_path = out / "postmortem_api_INC-7.html"
    md_path = out / "postmortem_api_INC-7.md"
    assert ref == str(html_path)
    assert md_path.read_text() == "# Postmortem v1\n"
    assert html_path.read_text() == "<h1>Postmortem v1</h1>\n"
    row = local_store.records.get_postmortem(pm_id)
    assert (row.document_markdown, row.document_html, row.document_ref) == (
        "# Postmortem v1\n", "<h1>Postmortem v1</h1>\n", ref)


def test_publish_again_is_idempotent(local_store: Store, tmp_path: Path) -> None:
    incident = _incident()
    pm_id = incident.workflow_id
    local_store.records.upsert_postmortem(pm_id, incident, owner="alice", stage="in_review", stalled=False,
                                          stage_due_at=None)
    out = tmp_path / "published"
    publisher = LocalPublisher(local_store, out)

    first = publisher.publish(_document(pm_id), f"{pm_id}/publish")
    again = publisher.publish(_document(pm_id), f"{pm_id}/publish")
    assert first == again
    assert sorted(p.name for p in out.iterdir()) == ["postmortem_api_INC-7.html", "postmortem_api_INC-7.md"]

    # A re-render (e.g. after a retry with fresh content) replaces the files; still no temp files or duplicates.
    third = publisher.publish(_document(pm_id, version=2), f"{pm_id}/publish")
    assert third == first
    assert sorted(p.name for p in out.iterdir()) == ["postmortem_api_INC-7.html", "postmortem_api_INC-7.md"]
    assert (out / "postmortem_api_INC-7.md").read_text() == "# Postmortem v2\n"
    assert local_store.records.get_postmortem(pm_id).document_html == "<h1>Postmortem v2</h1>\n"


def test_publish_unknown_postmortem_is_not_retryable(local_store: Store, tmp_path: Path) -> None:
    publisher = LocalPublisher(local_store, tmp_path / "out")
    with pytest.raises(IntegrationError) as err:
        publisher.publish(_document("postmortem/api/NOPE"), "k")
    assert err.value.retryable is False

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
    assert safe_name("postmortem/api/INC-7") == "postmortem_api_INC-7"  # the name it always had
    assert safe_name("../../etc/passwd") == "%2E._.._etc_passwd"
    assert "/" not in safe_name("a/b\\c d")
    assert "\\" not in safe_name("a/b\\c d")


def test_safe_name_is_injective() -> None:
    """Two incidents never share a file: "_", ":", "%" and "/" all stay apart."""
    ids = ["postmortem/api/x_y", "postmortem/api_x/y", "postmortem/api/x:y", "postmortem/api/x%5Fy",
           "postmortem/api/x%3Ay", "postmortem/api/x__y", "postmortem/api/.x", "postmortem/api/%2Ex",
           "postmortem/api/é", "postmortem/api/%C3%A9", "postmortem/api/" + "a" * 200,
           "postmortem/api/" + "a" * 199 + "b", "postmortem/api/" + "ü" * 200]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids), names
    for name in names:
        assert "/" not in name and not name.startswith(".")
        assert len(name.encode()) <= 200


def test_colliding_ids_publish_to_their_own_files(local_store: Store, tmp_path: Path) -> None:
    """api/x:y and api/x_y used to publish to the same files: the second overwrote the first."""
    out = tmp_path / "published"
    publisher = LocalPublisher(local_store, out)
    refs = {}
    for external_id in ("x:y", "x_y"):
        incident = Incident(source="api", external_id=external_id, title="Queue backlog")
        local_store.records.upsert_postmortem(incident.workflow_id, incident, owner="alice", stage="in_review",
                                              stalled=False, stage_due_at=None)
        doc = Document(postmortem_id=incident.workflow_id, title="Postmortem", markdown=f"# {external_id}\n",
                       html=f"<h1>{external_id}</h1>\n")
        refs[external_id] = publisher.publish(doc, f"{incident.workflow_id}/publish")
    assert refs["x:y"] != refs["x_y"]
    assert Path(refs["x:y"]).read_text() == "<h1>x:y</h1>\n"
    assert Path(refs["x_y"]).read_text() == "<h1>x_y</h1>\n"
    assert len(list(out.iterdir())) == 4


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

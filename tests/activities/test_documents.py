"""Draft files: one per incident, whatever characters its id holds."""

from __future__ import annotations

from pathlib import Path

from closeloop.activities.documents import DocumentActivities
from closeloop.integrations.local.publisher import LocalPublisher
from closeloop.models import Incident, Plan, PostmortemState, Stage
from closeloop.policy import Policy
from closeloop.store.store import Store


def _state(source: str, external_id: str) -> PostmortemState:
    incident = Incident(source=source, external_id=external_id, title=f"Incident {source}/{external_id}")
    plan = Plan(postmortem_id=incident.workflow_id, incident=incident, policy=Policy(), owner="alice",
                reviewers=[], attendees=["alice"], people=["alice"])
    return PostmortemState(plan=plan, owner="alice", stage=Stage.drafting)


def test_drafts_of_colliding_ids_get_their_own_files(tmp_path: Path) -> None:
    """api/x_y and api_x/y used to write the same draft file: the second incident's draft replaced the first."""
    store = Store(f"sqlite:///{tmp_path / 'closeloop.db'}")
    try:
        docs = DocumentActivities(LocalPublisher(store, tmp_path / "out"), tmp_path / "drafts", None)
        first = docs.prepare_draft(_state("api", "x_y"))
        second = docs.prepare_draft(_state("api_x", "y"))
        third = docs.prepare_draft(_state("api", "x:y"))
        assert len({first, second, third}) == 3
        assert "Incident api/x_y" in Path(first).read_text()
        assert "Incident api_x/y" in Path(second).read_text()
        assert "Incident api/x:y" in Path(third).read_text()
        # an ordinary id keeps the name it always had
        assert Path(docs.prepare_draft(_state("api", "INC-7"))).name == "postmortem_api_INC-7.md"
    finally:
        store.close()

"""Render the pre-filled draft and the published document (Jinja2, sandboxed), and publish it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from temporalio import activity

from closeloop.activities.support import log
from closeloop.ids import file_stem
from closeloop.integrations.base import Publisher
from closeloop.models import Model, PostmortemState
from closeloop.readmodel import Insights
from closeloop.rendering import render_document, render_draft


class Published(Model):
    ref: str  # the document's reference: the first publisher's other than local's, else local's
    refs: dict[str, str]  # every publisher's, by name, in the order they published


class DocumentActivities:
    """Drafts and published documents; holds the publishers, the drafts folder and the template overrides."""

    def __init__(self, publisher: Publisher | Sequence[Publisher], drafts_dir: Path, template_dir: Path | None,
                 insights: Insights | None = None) -> None:
        self.publishers = [publisher] if isinstance(publisher, Publisher) else list(publisher)
        self.drafts_dir = drafts_dir
        self.template_dir = template_dir
        self.insights = insights  # earlier postmortems of the same kind, for the draft's "Related incidents"

    @activity.defn(name="prepare_draft")
    def prepare_draft(self, state: PostmortemState) -> str:
        related = self.insights.related(state.plan.postmortem_id) if self.insights is not None else []
        markdown = render_draft(state, template_dir=self.template_dir, related=related)
        # Injective: "api/x_y" and "api_x/y" get two files. A running lifecycle keeps the path it was given
        # (draft_ref, in its state); an id without "_", "%" or other escaped characters keeps its old name.
        path = self.drafts_dir / (file_stem(state.plan.postmortem_id) + ".md")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(markdown)
        tmp.replace(path)
        return str(path)

    @activity.defn(name="publish_document")
    def publish_document(self, state: PostmortemState) -> str:
        """Publish; the document's reference alone (lifecycles that reached publishing before `publish` existed)."""
        return self.publish(state).ref

    @activity.defn(name="publish")
    def publish(self, state: PostmortemState) -> Published:
        """Publish through this postmortem's publishers, in order: `local` (the files and the library) always, then
        those its policy names (`publishers`; unset: every configured one). Each is idempotent, so a retry after
        one failed publishes again through all. The reference is the first one's other than `local` (a
        Confluence page), else local's; `refs` has each publisher's."""
        document = render_document(state, template_dir=self.template_dir)
        wanted = state.plan.policy.publishers
        chosen = [p for p in self.publishers if wanted is None or p.name == "local" or p.name in wanted]
        refs = {p.name: p.publish(document, f"{state.plan.postmortem_id}/publish") for p in chosen}
        ref = next((r for name, r in refs.items() if name != "local"), None) or next(iter(refs.values()))
        log().info("postmortem published", ref=ref, refs=refs)
        return Published(ref=ref, refs=refs)

"""Render the pre-filled draft and the published document (Jinja2, sandboxed), and publish it."""

from __future__ import annotations

from temporalio import activity

from closeloop.activities._shared import deps, log
from closeloop.models import PostmortemState
from closeloop.rendering import render_document, render_draft


@activity.defn
def prepare_draft(state: PostmortemState) -> str:
    d = deps()
    markdown = render_draft(state, template_dir=d.template_dir)
    path = d.config.data_dir / "drafts" / (state.plan.postmortem_id.replace("/", "_") + ".md")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(markdown)
    tmp.replace(path)
    return str(path)


@activity.defn
def publish_document(state: PostmortemState) -> str:
    d = deps()
    document = render_document(state, template_dir=d.template_dir)
    ref = d.publisher.publish(document, f"{state.plan.postmortem_id}/publish")
    log().info("postmortem published", ref=ref)
    return ref

"""Human actions on running lifecycles, each a Workflow Update: the workflow's validator accepts or rejects
it before anything is recorded, and the CLI prints the Update's answer (or "rejected: <reason>", exit 1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from closeloop.cli._common import (
    DURATION,
    Context,
    bad_input,
    item_id,
    pass_ctx,
    postmortem_id,
    read_json,
    read_text,
    validation_message,
)

DRAFT_FLAGS = {"by": "--as", "summary": "--summary", "impact": "--impact", "root_cause": "--root-cause",
               "resolution": "--resolution", "lessons": "--lessons", "action_items": "--item"}


def _update(obj: Context, kind: str, wid: str, ref: Any, arg: Any) -> None:
    """Run the Update `ref` (a closeloop.contract.UpdateRef) as the `--as` person, an operator's act: through
    the web app's operator API (closeloop.cli.operator), which checks the credential and records it. Prints the
    Update's answer."""
    from closeloop.cli.operator import operator_update

    click.echo(operator_update(obj.config(), kind, wid, ref.name, arg))


def _model(cls: Any, data: dict[str, Any], what: str, flags: dict[str, str] | None = None) -> Any:
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise bad_input(validation_message(e, what, flags)) from None


AS_OPTION = click.option("--as", "who", metavar="PERSON", required=True,
                         help="The person to act for (a person key): an operator's act, through the web app, with "
                              "CLOSELOOP_OPERATOR_TOKEN; recorded in its audit log.")
ITEM_ARGUMENT = click.argument("item_ref", metavar="ITEM_ID")


# --------------------------------------------------------------------------- draft


@click.group("draft")
def draft() -> None:
    """Submit the draft, ask for more time, or hand the postmortem to someone else.

    \b
    Examples:
      closeloop draft submit api/INC-1 --as alice --file draft.md
      closeloop draft extend api/INC-1 --as alice --by 2d --reason "waiting for vendor RCA"
      closeloop draft reassign api/INC-1 --to bob --as carol --reason "alice is on leave"
    """


def _item(value: str) -> dict[str, Any]:
    parts = [p.strip() for p in value.split("|")]
    if len(parts) < 2 or len(parts) > 6 or not parts[0] or not parts[1]:
        raise bad_input(f"bad --item {value!r}: use \"TITLE|OWNER[|P1-P4[|prevent|detect|mitigate|process[|DUE"
                        "[|DONE WHEN]]]]\"")
    spec: dict[str, Any] = {"title": parts[0], "owner": parts[1]}
    for key, part in zip(("priority", "kind", "due_in", "done_when"), parts[2:], strict=False):
        if part:
            spec[key] = part
    return spec


def _is_markdown(path: str, text: str) -> bool:
    """A Markdown draft by its extension (.md, .markdown), else by its content (JSON starts with "{")."""
    suffix = path.lower().rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in ("md", "markdown"):
        return True
    if suffix == "json":
        return False
    return not text.lstrip("\ufeff \t\r\n").startswith("{")


def _markdown_draft(path: str, text: str, who: str | None) -> dict[str, Any]:
    from datetime import UTC, datetime

    from closeloop.draft_markdown import DraftError, parse_draft

    if not who:
        raise bad_input("missing --as: who is submitting the draft?")
    try:
        submission = parse_draft(text, by=who, now=datetime.now(UTC))
    except DraftError as e:
        raise bad_input(f"{path}: {e}") from None
    return submission.model_dump()


@draft.command("submit")
@click.argument("postmortem", metavar="ID")
@click.option("--as", "who", metavar="PERSON", help="The owner to submit the draft for (or \"by\" in --file): an "
                                                    "operator's act, with CLOSELOOP_OPERATOR_TOKEN.")
@click.option("--file", "file_", metavar="PATH",
              help="The draft: the pre-filled Markdown draft, edited (<data_dir>/drafts/<id>.md; a .md or .markdown "
                   "file, or any file not starting with '{'), or JSON: summary, impact, root_cause, resolution, "
                   "lessons, action_items... ('-' for stdin). Flags given as well override the file.")
@click.option("--summary", help="What happened, for a reader who was not there.")
@click.option("--impact", help="Who and what was affected, for how long.")
@click.option("--root-cause", help="Why it happened.")
@click.option("--resolution", help="How it was fixed.")
@click.option("--lessons", help="What went well, what did not, where we got lucky.")
@click.option("--item", "items", multiple=True, metavar="'TITLE|OWNER|P1|prevent'",
              help="An action item (repeatable): title|owner[|priority P1-P4[|kind prevent/detect/mitigate/process"
                   "[|due e.g. 14d[|done when: how anyone can tell it is done]]]].")
@pass_ctx
def draft_submit(obj: Context, /, postmortem: str, who: str | None, file_: str | None, items: tuple[str, ...],
                 **fields: Any) -> None:
    """Submit the postmortem draft (only the owner can), which sends it to review.

    \b
    The Markdown draft is read section by section (## Summary, ## Impact, ## Timeline, ## Root cause, ...,
    ## Action items as a table: Title | Owner | Priority | Kind | Due | Done when); a line starting with
    "TODO:" is a placeholder, and a section holding only its TODO is empty. A draft that cannot be read is one
    line naming the line of the file (exit 2).

    \b
    Examples:
      closeloop draft submit api/INC-1 --as alice --file draft.md
      closeloop draft submit api/INC-1 --as alice --file draft.json
      closeloop draft submit api/INC-1 --as alice --summary "Checkout failed for 40 minutes" \\
          --root-cause "A bad config push" --item "Validate config before push|bob|P1|prevent"
    """
    from closeloop import contract
    from closeloop.models import DraftSubmission

    wid = postmortem_id(postmortem)
    data: dict[str, Any] = {}
    if file_:
        text = read_text(file_)
        if _is_markdown(file_, text):
            data.update(_markdown_draft(file_, text, who))
        else:
            loaded = read_json(file_, text)
            if not isinstance(loaded, dict):
                raise bad_input(f"{file_}: the draft must be a JSON object")
            data.update(loaded)
    data.update({k: v for k, v in fields.items() if v is not None})
    if items:
        data["action_items"] = [_item(v) for v in items]
    if who and data.get("by") and data["by"] != who:
        raise bad_input(f"the draft says \"by\": {data['by']!r} but --as is {who!r}")
    if who:
        data["by"] = who
    if not data.get("by"):
        raise bad_input("missing --as: who is submitting the draft?")
    if "summary" not in data:
        raise bad_input("missing --summary (or \"summary\" in --file): the draft needs a summary")
    submission = _model(DraftSubmission, data, "draft", DRAFT_FLAGS)
    _update(obj, "postmortem", wid, contract.SUBMIT_DRAFT, submission)


@draft.command("extend")
@click.argument("postmortem", metavar="ID")
@AS_OPTION
@click.option("--by", "extra", type=DURATION, required=True, help="How much more time, e.g. 2d or 36h.")
@click.option("--reason", required=True, help="Why (recorded in the postmortem).")
@pass_ctx
def draft_extend(obj: Context, postmortem: str, who: str, extra: timedelta, reason: str) -> None:
    """Move the draft's due date (the owner only, within the policy's max_extension).

    \b
    Example:
      closeloop draft extend api/INC-1 --as alice --by 2d --reason "waiting for the vendor's RCA"
    """
    from closeloop import contract
    from closeloop.models import ExtensionRequest

    wid = postmortem_id(postmortem)
    req = _model(ExtensionRequest, {"by": who, "extra": extra, "reason": reason}, "extension",
                 {"by": "--as", "extra": "--by", "reason": "--reason"})
    _update(obj, "postmortem", wid, contract.REQUEST_EXTENSION, req)


@draft.command("reassign")
@click.argument("postmortem", metavar="ID")
@click.option("--to", "new_owner", metavar="PERSON", required=True, help="The new owner.")
@AS_OPTION
@click.option("--reason", default="", help="Why (told to the new owner).")
@pass_ctx
def draft_reassign(obj: Context, postmortem: str, new_owner: str, who: str, reason: str) -> None:
    """Hand the postmortem to another owner.

    \b
    Example:
      closeloop draft reassign api/INC-1 --to bob --as carol --reason "alice is on leave"
    """
    from closeloop import contract
    from closeloop.models import Reassignment

    wid = postmortem_id(postmortem)
    req = _model(Reassignment, {"by": who, "new_owner": new_owner, "reason": reason}, "reassignment")
    _update(obj, "postmortem", wid, contract.REASSIGN_OWNER, req)


# --------------------------------------------------------------------------- review


@click.group("review")
def review() -> None:
    """Approve the draft or request changes (reviewers only).

    \b
    Examples:
      closeloop review approve api/INC-1 --as bob --comment "clear and complete"
      closeloop review request-changes api/INC-1 --as erin --comment "the timeline misses the rollback"
    """


def _vote(obj: Context, postmortem: str, who: str, decision: str, comment: str) -> None:
    from closeloop import contract
    from closeloop.models import ReviewVote

    wid = postmortem_id(postmortem)
    vote = _model(ReviewVote, {"reviewer": who, "decision": decision, "comment": comment}, "review")
    _update(obj, "postmortem", wid, contract.REVIEW, vote)


@review.command("approve")
@click.argument("postmortem", metavar="ID")
@AS_OPTION
@click.option("--comment", default="", help="Optional comment.")
@pass_ctx
def review_approve(obj: Context, postmortem: str, who: str, comment: str) -> None:
    """Approve the draft of this review round.

    \b
    Example:
      closeloop review approve api/INC-1 --as bob
    """
    _vote(obj, postmortem, who, "approve", comment)


@review.command("request-changes")
@click.argument("postmortem", metavar="ID")
@AS_OPTION
@click.option("--comment", required=True, help="Which changes (sent to the owner).")
@pass_ctx
def review_request_changes(obj: Context, postmortem: str, who: str, comment: str) -> None:
    """Send the draft back to its owner with the changes you need.

    \b
    Example:
      closeloop review request-changes api/INC-1 --as bob --comment "add the customer impact numbers"
    """
    _vote(obj, postmortem, who, "request_changes", comment)


# --------------------------------------------------------------------------- cancel


@click.command("cancel")
@click.argument("postmortem", metavar="ID")
@AS_OPTION
@click.option("--reason", required=True, help="Why no postmortem is needed (told to the owner).")
@pass_ctx
def cancel(obj: Context, postmortem: str, who: str, reason: str) -> None:
    """Cancel a postmortem lifecycle.

    \b
    Example:
      closeloop cancel api/INC-1 --as alice --reason "duplicate of INC-0"
    """
    from closeloop import contract
    from closeloop.models import Cancellation

    wid = postmortem_id(postmortem)
    req = _model(Cancellation, {"by": who, "reason": reason}, "cancellation")
    _update(obj, "postmortem", wid, contract.CANCEL, req)


# --------------------------------------------------------------------------- action items


@click.group("item")
def item() -> None:
    """Complete an action item or give its effectiveness verdict.

    ITEM_ID is postmortem/api/INC-1/item-2 or its shorthand api/INC-1/item-2 (`closeloop status ID` lists them).

    \b
    Examples:
      closeloop item complete api/INC-1/item-1 --as bob --note "shipped in #4711"
      closeloop item verdict api/INC-1/item-1 --as bob --effective
      closeloop item reason api/INC-1/item-2 --as bob --reason "the service is being retired"
    """


@item.command("complete")
@ITEM_ARGUMENT
@AS_OPTION
@click.option("--note", default="", help="Optional note.")
@pass_ctx
def item_complete(obj: Context, item_ref: str, who: str, note: str) -> None:
    """Mark an action item done (its owner or the postmortem owner).

    \b
    Example:
      closeloop item complete api/INC-1/item-1 --as bob --note "shipped in #4711"
    """
    from closeloop import contract
    from closeloop.models import CompleteItem

    wid = item_id(item_ref)
    _update(obj, "action item", wid, contract.COMPLETE_ITEM,
            _model(CompleteItem, {"by": who, "note": note}, "completion"))


@item.command("verdict")
@ITEM_ARGUMENT
@AS_OPTION
@click.option("--effective/--ineffective", "effective", default=None,
              help="Did the action item prevent a repeat?")
@click.option("--note", default="", help="Optional note (why).")
@pass_ctx
def item_verdict(obj: Context, item_ref: str, who: str, effective: bool | None, note: str) -> None:
    """Say whether a done action item worked, when its effectiveness review asks.

    \b
    Example:
      closeloop item verdict api/INC-1/item-1 --as bob --ineffective --note "the alert still flaps"
    """
    from closeloop import contract
    from closeloop.models import VerdictInput

    wid = item_id(item_ref)
    if effective is None:
        raise bad_input("say --effective or --ineffective (see `closeloop item verdict --help`)")
    _update(obj, "action item", wid, contract.VERDICT,
            _model(VerdictInput, {"by": who, "effective": effective, "note": note}, "verdict"))


@item.command("reason")
@ITEM_ARGUMENT
@AS_OPTION
@click.option("--reason", required=True, help="Why the item will not be done (a sentence).")
@pass_ctx
def item_reason(obj: Context, item_ref: str, who: str, reason: str) -> None:
    """Say why an action item whose ticket was closed as won't do is dropped, when closeloop asks.

    \b
    Example:
      closeloop item reason api/INC-1/item-2 --as bob --reason "the service is being retired in March"
    """
    from closeloop import contract
    from closeloop.models import WontDoReason

    wid = item_id(item_ref)
    _update(obj, "action item", wid, contract.EXPLAIN_WONT_DO,
            _model(WontDoReason, {"by": who, "reason": reason.strip()}, "reason"))


COMMANDS = [draft, review, cancel, item]

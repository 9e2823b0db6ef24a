"""One reading of a pydantic ValidationError for every place that reports one on a single line (the config,
the CLI, the web app): where (the field's dotted path, or the caller's name for it), what is wrong (pydantic's
message without its "Value error, " prefix), and how many other problems there are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    where: str  # "" when the error is about the whole value
    message: str
    others: int  # further errors after this one

    def line(self, *, prefix: str = "", more: str = "more") -> str:
        """"<prefix><where>: <message> (and N <more>)", without the parts that are empty."""
        tail = f" (and {self.others} {more})" if self.others else ""
        return f"{prefix}{self.where}: {self.message}{tail}" if self.where else f"{prefix}{self.message}{tail}"


def first_problem(e: ValidationError, names: Mapping[str, str] | None = None, *, base: str = "") -> Problem:
    """The first error of `e`. `names` renames a top-level field (e.g. to its command-line flag, or to the
    sender's own field name); `base` is put in front of the path."""
    errors = e.errors()
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"])
    if names and err["loc"] and str(err["loc"][0]) in names:
        loc = names[str(err["loc"][0])]
    where = f"{base}{loc}" if loc else base.rstrip(".")
    return Problem(where=where, message=str(err["msg"]).removeprefix("Value error, "), others=len(errors) - 1)

"""The built-in publisher: the postmortem as Markdown and HTML files in a directory, plus a copy in the store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from closeloop.ids import file_stem
from closeloop.integrations.base import Document, IntegrationError, Publisher
from closeloop.store.store import Store


def safe_name(postmortem_id: str) -> str:
    """A file name for a postmortem id: "postmortem/pagerduty/P1" -> "postmortem_pagerduty_P1"; injective
    (closeloop.ids.file_stem), so two incidents never publish to the same files."""
    return file_stem(postmortem_id)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class LocalPublisher(Publisher):
    """Writes `<out_dir>/<safe-name>.md` and `.html`. Publishing again overwrites the same two files."""

    name = "local"

    def __init__(self, store: Store, out_dir: Path) -> None:
        self.store = store
        self.out_dir = Path(out_dir)

    def paths(self, postmortem_id: str) -> tuple[Path, Path]:
        base = Path(os.path.abspath(self.out_dir)) / safe_name(postmortem_id)
        return base.with_name(base.name + ".md"), base.with_name(base.name + ".html")

    def publish(self, document: Document, idempotency_key: str) -> str:
        # The files are named after the postmortem, so any retry (same key or not) rewrites the same files.
        md_path, html_path = self.paths(document.postmortem_id)
        try:
            md_path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(md_path, document.markdown)
            _write_atomically(html_path, document.html)
        except OSError as e:
            raise IntegrationError(f"cannot write the postmortem to {md_path.parent}: {e.strerror or e}") from e
        ref = str(html_path)
        if document.kind != "postmortem":
            return ref  # a report: the files only (the store's copies are the library's postmortems)
        try:
            self.store.records.save_document(document.postmortem_id, markdown=document.markdown, html=document.html,
                                             ref=ref)
        except KeyError:
            raise IntegrationError(
                f"postmortem {document.postmortem_id} is not in the store", retryable=False
            ) from None
        return ref

"""Search attribute values stay within Temporal's 2 KB per value, whatever the incident carries."""

from __future__ import annotations

import json

from closeloop import search_attributes as sa


def test_keyword_list_is_bounded_deduplicated_and_in_order() -> None:
    services = ["checkout", "checkout", *(f"svc-{n:03d}-" + "x" * 60 for n in range(100)), "é" * 500]
    kept = sa.keyword_list(services)
    assert kept[0] == "checkout" and kept.count("checkout") == 1
    assert kept == list(dict.fromkeys(services))[:len(kept)]
    assert len(json.dumps(kept).encode()) <= sa.MAX_LIST_BYTES < 2048
    assert sa.keyword_list(["a", "b"]) == ["a", "b"]


def test_keyword_is_cut_on_a_character_boundary() -> None:
    assert sa.keyword("SEV1") == "SEV1"
    cut = sa.keyword("é" * 5000)
    assert len(cut.encode()) <= sa.MAX_KEYWORD_BYTES and set(cut) == {"é"}
    assert sa.keyword_list(["é" * 5000]) == [cut]

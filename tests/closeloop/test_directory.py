"""The people directory: from the config's [people] tables or from a CSV file, escalation chains, and the
problems `config check` reports (unknown managers and time zones, management cycles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.config import ConfigError, load_config
from closeloop.directory import Directory, DirectoryError, DirectorySettings, load_directory
from closeloop.models import Person


def person(key: str, manager: str | None = None) -> Person:
    return Person(key=key, name=key.title(), email=f"{key}@example.com", manager=manager)


def test_chains_roles_and_involved_people() -> None:
    d = Directory({p.key: p for p in [person("alice", "carol"), person("carol", "dave"), person("dave"),
                                      person("bob", "carol")]})
    assert d.chain_for("alice") == {"owner": "alice", "manager": "carol", "skip_level": "dave"}
    assert d.resolve_target("manager", "bob") == "carol"
    assert d.resolve_target("skip_level", "dave") is None
    assert d.resolve_target("zed", "alice") is None
    assert d.with_chains(["alice", "bob", "zed"]) == ["alice", "carol", "dave", "bob"]


def test_a_csv_directory_reads_people_managers_and_handles(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("key,name,email,timezone,manager,handle_jira,handle_github\n"
                    "alice,Alice Owner,alice@example.com,Europe/Berlin,carol,acc-alice,alice-gh\n"
                    "carol,Carol Manager,carol@example.com,,,,\n", encoding="utf-8")
    d = load_directory(DirectorySettings(source="csv", path=path), {})
    assert d["alice"] == Person(key="alice", name="Alice Owner", email="alice@example.com", timezone="Europe/Berlin",
                                manager="carol", handles={"jira": "acc-alice", "github": "alice-gh"})
    assert d["carol"].timezone == "UTC" and d["carol"].handles == {}
    assert d.problems() == []


@pytest.mark.parametrize(("text", "error"), [
    ("key,name,email\n,Nobody,n@example.com\n", "people.csv, line 2: the key column is empty"),
    ("key,name,email\na,A,a@example.com\na,A,a@example.com\n", "people.csv, line 3: 'a' appears twice"),
    ("key,name\na,A\n", "people.csv, line 2: email: Field required"),
])
def test_a_bad_csv_names_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DirectoryError) as e:
        load_directory(DirectorySettings(source="csv", path=path), {})
    assert str(e.value).endswith(error)


def test_config_check_refuses_a_management_cycle_and_reads_a_csv_directory(tmp_path: Path) -> None:
    cyclic = tmp_path / "cyclic.toml"
    cyclic.write_text('default_owner = "a"\n[people.a]\nname = "A"\nemail = "a@x.org"\nmanager = "b"\n'
                      '[people.b]\nname = "B"\nemail = "b@x.org"\nmanager = "a"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cyclic, env={})
    assert "management cycle a -> b -> a" in str(e.value)

    people = tmp_path / "people.csv"
    people.write_text("key,name,email,manager\nalice,Alice,alice@x.org,carol\ncarol,Carol,carol@x.org,\n")
    from_csv = tmp_path / "csv.toml"
    from_csv.write_text(f'default_owner = "alice"\n[directory]\nsource = "csv"\npath = "{people}"\n')
    config = load_config(from_csv, env={})
    assert sorted(config.people_directory()) == ["alice", "carol"]

    people.write_text("key,name,email,manager\nalice,Alice,alice@x.org,zoe\n")
    with pytest.raises(ConfigError) as e:
        load_config(from_csv, env={})
    assert "people.alice.manager: unknown person 'zoe'" in str(e.value)

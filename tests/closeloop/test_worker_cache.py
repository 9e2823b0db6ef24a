"""The worker's sticky cache size: `[temporal] max_cached_workflows`, or CLOSELOOP_MAX_CACHED_WORKFLOWS, reaches
the SDK Worker (deploy/README.md: Capacity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.config import ConfigError, load_config
from tests.temporal_env import TEST_CONFIG


def config_file(tmp_path: Path, temporal: str = "") -> Path:
    path = tmp_path / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n' + TEST_CONFIG + (f"\n[temporal]\n{temporal}\n" if temporal else ""))
    return path


def test_default_is_250(tmp_path: Path) -> None:
    assert load_config(config_file(tmp_path), env={}).temporal.max_cached_workflows == 250


def test_from_the_config_and_the_environment(tmp_path: Path) -> None:
    path = config_file(tmp_path, "max_cached_workflows = 200")
    assert load_config(path, env={}).temporal.max_cached_workflows == 200
    env = {"CLOSELOOP_MAX_CACHED_WORKFLOWS": "5000"}
    assert load_config(path, env=env).temporal.max_cached_workflows == 5000


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_size_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="max_cached_workflows"):
        load_config(config_file(tmp_path), env={"CLOSELOOP_MAX_CACHED_WORKFLOWS": value})


def test_the_worker_gets_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import closeloop.worker as worker_module
    from closeloop.integrations.registry import build

    seen: dict[str, object] = {}
    monkeypatch.setattr(worker_module, "Worker", lambda client, **kwargs: seen.update(kwargs))
    config = load_config(config_file(tmp_path), env={"CLOSELOOP_DB_URL": f"sqlite:///{tmp_path / 'c.db'}"})
    integrations = build(config)
    try:
        worker_module.build_worker(object(), integrations, "q", max_cached_workflows=7)  # type: ignore[arg-type]
        assert seen["max_cached_workflows"] == 7 and seen["task_queue"] == "q"
    finally:
        integrations.store.close()

"""Fixtures the integration tests share: a real SMTP server (aiosmtpd, tests/standins/smtp.py) with STARTTLS and
AUTH, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins.smtp import SmtpServer


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server

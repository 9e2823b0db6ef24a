"""An activity's failure stays small whatever the chain behind it: Temporal refuses a failure past its size
limit ("Failure exceeds size limit"), and then nobody learns why the activity failed."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from closeloop.activities.support import external_errors
from closeloop.integrations.base import IntegrationError

MAX_FAILURE_MESSAGE = 2000  # characters: far below Temporal's failure size limit


def _long_chain(depth: int, size: int) -> IntegrationError:
    """An integration error raised from `depth` nested errors, each with a `size`-character message."""
    try:
        try:
            error: BaseException = ValueError("root cause: " + "x" * size)
            for n in range(depth):
                try:
                    raise error
                except BaseException as inner:  # noqa: BLE001 - building the chain
                    error = RuntimeError(f"layer {n}: " + "y" * size)
                    error.__cause__ = inner
            raise error
        except RuntimeError as e:
            raise IntegrationError("tracker answered 502 " + "z" * size) from e
    except IntegrationError as e:
        return e


def test_a_long_error_chain_becomes_a_bounded_message_without_the_raw_chain() -> None:
    error = _long_chain(depth=50, size=100_000)
    with pytest.raises(ApplicationError) as raised:
        with external_errors("creating the ticket"):
            raise error
    failure = raised.value
    assert len(failure.message) <= MAX_FAILURE_MESSAGE, len(failure.message)
    assert failure.__cause__ is None  # the chain is told in the message, not serialised cause by cause
    assert failure.message.startswith("creating the ticket: tracker answered 502 zzz")
    assert "<- caused by RuntimeError: layer 49" in failure.message and "more causes" in failure.message
    assert "\n" not in failure.message


def test_a_short_failure_is_told_whole() -> None:
    with pytest.raises(ApplicationError) as raised:
        with external_errors("creating the ticket"):
            raise IntegrationError("project KEY not found", retryable=False)
    assert raised.value.message == "creating the ticket: project KEY not found"
    assert raised.value.non_retryable

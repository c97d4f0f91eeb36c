"""The shared argument checks: one wording for every bad argument."""

from __future__ import annotations

import pytest

from streams._checks import (
    check_choice,
    check_close_code,
    check_int,
    check_minimum,
    check_on_error,
    check_seconds,
    check_sync_callable,
)


def test_check_choice_returns_a_valid_value() -> None:
    assert check_choice("mode", "binary", ("text", "binary")) == "binary"


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (("text",), "mode must be 'text', not 'xml'"),
        (("text", "binary"), "mode must be 'text' or 'binary', not 'xml'"),
        (("text", "binary", "any"), "mode must be 'text', 'binary' or 'any', not 'xml'"),
    ],
)
def test_check_choice_names_the_choices(choices: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        check_choice("mode", "xml", choices)


def test_check_minimum() -> None:
    check_minimum("size", 1, 1)
    with pytest.raises(ValueError, match=r"^size must be >= 1$"):
        check_minimum("size", 0, 1)
    with pytest.raises(ValueError, match=r"^timeout must be >= 0$"):
        check_minimum("timeout", -0.5, 0)


def test_check_on_error() -> None:
    errors: list[object] = []
    assert check_on_error("raise") is None
    assert check_on_error(errors.append) == errors.append
    with pytest.raises(ValueError, match="on_error must be 'raise' or a callable, not 'skip'"):
        check_on_error("skip")


def test_check_sync_callable() -> None:
    async def coro(x: object) -> object:
        return x

    check_sync_callable(len)
    with pytest.raises(TypeError, match="synchronous functions"):
        check_sync_callable(coro)
    with pytest.raises(TypeError, match="expected a callable, got int"):
        check_sync_callable(42)


def test_check_int() -> None:
    check_int("queue_size", 0, 0)
    check_int("compression_level", 9, -1, 9)
    with pytest.raises(TypeError, match=r"queue_size must be an int, not 1\.5"):
        check_int("queue_size", 1.5, 0)
    with pytest.raises(TypeError, match="queue_size must be an int, not True"):
        check_int("queue_size", True, 0)
    with pytest.raises(ValueError, match="queue_size must be 0 or more, not -1"):
        check_int("queue_size", -1, 0)
    with pytest.raises(ValueError, match="memory_level must be from 1 to 9, not 10"):
        check_int("memory_level", 10, 1, 9)


def test_check_seconds() -> None:
    check_seconds("stale_after", None)
    check_seconds("close_timeout", 0, zero=True)
    with pytest.raises(ValueError, match="stale_after must be more than 0 seconds or None"):
        check_seconds("stale_after", 0)
    with pytest.raises(ValueError, match="close_timeout must be 0 or more seconds"):
        check_seconds("close_timeout", -1, zero=True)
    with pytest.raises(ValueError, match="lag_timeout"):
        check_seconds("lag_timeout", float("nan"))
    with pytest.raises(TypeError, match="a number of seconds"):
        check_seconds("lag_timeout", "5")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [1000, 1011, 1014, 3000, 4999])
def test_check_close_code_accepts_sendable_codes(code: int) -> None:
    check_close_code(code)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_check_close_code_refuses_local_and_reserved_codes(code: int) -> None:
    with pytest.raises(ValueError, match=f"close code {code} may not be sent"):
        check_close_code(code)

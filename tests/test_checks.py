"""The shared argument checks: one wording for every bad argument."""

from __future__ import annotations

import pytest

from streams._checks import check_choice, check_minimum, check_on_error, check_sync_callable


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

"""Argument checks that raise errors naming the owner, the argument, the rule and the value.

A value of the wrong type raises `WrongType` (a TypeError, as torch raises for a float
`hidden_size`); a value of the right type outside its rule `InvalidArgument` (a
ValueError). See `lstmlab.errors`.
"""

from __future__ import annotations

from typing import Any

from lstmlab.errors import InvalidArgument, WrongType, describe


def _int(owner: str, name: str, value: Any, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType(owner, name, f"must be {rule}; got {describe(value)} of type {type(value).__name__}")


def positive_int(owner: str, name: str, value: Any) -> int:
    _int(owner, name, value, "a positive int")
    if value <= 0:
        raise InvalidArgument(owner, name, f"must be greater than zero; got {value!r}")  # torch's phrase
    return value


def non_negative_int(owner: str, name: str, value: Any) -> int:
    _int(owner, name, value, "a non-negative int")
    if value < 0:
        raise InvalidArgument(owner, name, f"must be a non-negative int; got {value!r}")
    return value


def probability(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidArgument(owner, name, f"must be a number in [0, 1]; got {describe(value)}")
    return float(value)


def boolean(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        # "should be of type bool, got: int" is torch's wording; its tests match on it
        raise WrongType(owner, name, f"should be of type bool, got: {type(value).__name__} ({describe(value)})")
    return value


def one_of(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidArgument(owner, name, f"must be one of {', '.join(map(repr, allowed))}; got {describe(value)}")
    return value

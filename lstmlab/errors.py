"""The errors lstmlab raises, as data: who raised it, the argument at fault, the rule and value.

Every error carries `owner` ("LSTM", "charlm", "train"), `argument` ("hidden_size",
"input", "--hidden"; may be empty) and `detail` ("must be a positive int; got 0"),
and reads `owner: argument detail`. Code that re-labels an error (the command line
naming a flag rather than a constructor argument) calls `relabel`, never edits the
string.

Each class is also the built-in exception torch raises for the same mistake, so code
written against torch's modules catches lstmlab's errors unchanged: a wrong input or
hidden size is a RuntimeError in torch (and a ValueError here before), a non-int size
a TypeError, an out-of-range value a ValueError.

Example:
    >>> try:
    ...     lstmlab.LSTM(10, 0)
    ... except ValueError as error:
    ...     error.owner, error.argument
    ('LSTM', 'hidden_size')
"""

from __future__ import annotations

from typing import Any, TypeVar

_E = TypeVar("_E", bound="LstmlabError")


class LstmlabError(Exception):
    """Base of every error lstmlab raises on purpose; see the module docstring."""

    def __init__(self, owner: str, argument: str, detail: str) -> None:
        super().__init__(owner, argument, detail)  # args, so that errors pickle (multiprocessing, DDP)
        self.owner, self.argument, self.detail = owner, argument, detail

    @property
    def message(self) -> str:
        """The error without its owner: `argument detail`."""
        if not self.argument:
            return self.detail
        return self.argument + ("" if self.detail.startswith("=") else " ") + self.detail  # "backend='x' cannot ..."

    def __str__(self) -> str:
        return f"{self.owner}: {self.message}" if self.owner else self.message

    def relabel(self: _E, owner: str | None = None, argument: str | None = None) -> _E:
        """The same error under another owner and/or argument name (same class, same detail)."""
        return type(self)(self.owner if owner is None else owner, self.argument if argument is None else argument, self.detail)


class InvalidArgument(LstmlabError, ValueError):
    """An argument of the right type with a value outside its rule (torch: ValueError)."""


class WrongType(LstmlabError, TypeError):
    """An argument of the wrong type (torch: TypeError)."""


class ShapeMismatch(LstmlabError, ValueError, RuntimeError):
    """An input or state whose size disagrees with the module (torch: RuntimeError)."""


class FixedAttribute(LstmlabError, AttributeError):
    """An attribute that cannot change after construction (it fixes the parameters' shapes)."""


class Unsupported(LstmlabError, ValueError, RuntimeError):
    """A valid request this backend or configuration cannot carry out."""


def error_class(builtin: type[Exception]) -> type[LstmlabError]:
    """The lstmlab error class for a built-in exception type (ValueError, TypeError, RuntimeError)."""
    return {ValueError: InvalidArgument, TypeError: WrongType, RuntimeError: Unsupported}[builtin]


def describe(value: Any) -> str:
    """A value as an error message shows it: repr, shortened past 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = [
    "FixedAttribute",
    "InvalidArgument",
    "LstmlabError",
    "ShapeMismatch",
    "Unsupported",
    "WrongType",
    "describe",
    "error_class",
]

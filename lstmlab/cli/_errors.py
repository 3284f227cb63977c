"""How a command reports a mistake: one line on stderr, exit status 2, in the command's terms.

The library raises `lstmlab.errors.LstmlabError`s that name the argument at fault as
the library calls it (`train: hidden must be greater than zero; got 0`). A command
knows which of those arguments it set from which flag, and re-labels such an error
with the flag and its own name (`train: --hidden must be greater than zero; got 0`);
the message itself is never edited.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from lstmlab.errors import LstmlabError


def in_flag_terms(command: str, error: LstmlabError, flags: Mapping[str, str]) -> LstmlabError:
    """`error` named by the flag and the command when `flags` (argument -> flag) holds its argument; else unchanged."""
    flag = flags.get(error.argument)
    return error if flag is None else error.relabel(owner=command, argument=flag)


def fail(command: str, error: Exception, flags: Mapping[str, str] | None = None) -> int:
    """Print `error` as one line on stderr (in flag terms, see `in_flag_terms`) and return the exit status, 2."""
    if isinstance(error, LstmlabError):
        error = in_flag_terms(command, error, flags or {})
    print(error, file=sys.stderr)
    return 2

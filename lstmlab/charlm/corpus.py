"""Text for character-level language models: reading, vocabulary, split and batch streams.

The batches follow char-rnn (Karpathy 2015): the training text is cut into B parallel
streams, and consecutive batches hold consecutive chunks of every stream, so the
hidden state left by one batch is the right initial state for the next (truncated
backpropagation through time, the state detached between chunks).

Shapes: a batch is (inputs, targets), each (B, T) of int64 character indices with
targets[b, t] = inputs[b, t + 1] in the underlying stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lstmlab.errors import InvalidArgument

DEFAULT_CORPUS = "python-reference"
"""Name of the corpus used without a text file: the Python language reference's topics."""

TRAIN_FRACTION = 0.9


def read_text(path: str | os.PathLike, argument: str = "text") -> str:
    """The UTF-8 text of the file at `path`; InvalidArgument naming `argument` if unreadable, not UTF-8 or empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InvalidArgument("charlm", argument, f"must name a readable file; got {str(path)!r} ({error.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidArgument(
            "charlm", argument, f"must be UTF-8 text; {str(path)!r} has an invalid byte at offset {error.start}"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text:
        raise InvalidArgument("charlm", argument, f"must not be empty; {str(path)!r} has no characters")
    return text


def default_text() -> str:
    """A corpus every CPython installation holds: the topics of the Python language reference.

    `pydoc_data.topics` (about 460 000 characters of English prose with code, shipped
    with CPython for `help()`) joined in the order of its keys. Should a distribution
    leave it out, the source of the standard library's `argparse`, `typing`, `inspect`
    and `difflib` modules stands in.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - depends on how Python was packaged
        stdlib = Path(os.__file__).parent
        return "".join(
            (stdlib / name).read_text(encoding="utf-8") for name in ("argparse.py", "typing.py", "inspect.py", "difflib.py")
        )
    return "\n".join(topics[key].strip("\n") + "\n" for key in sorted(topics))


@dataclass(frozen=True)
class Vocabulary:
    """The characters of a corpus, sorted, each with its index."""

    chars: str

    def __post_init__(self) -> None:
        if not self.chars or len(set(self.chars)) != len(self.chars):
            raise InvalidArgument("Vocabulary", "chars", f"must be non-empty and distinct; got {self.chars!r}")

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: object) -> bool:
        return isinstance(char, str) and len(char) == 1 and char in self._index

    @property
    def _index(self) -> dict[str, int]:
        index = self.__dict__.get("_index_cache")
        if index is None:
            index = {char: k for k, char in enumerate(self.chars)}
            object.__setattr__(self, "_index_cache", index)
        return index

    def missing(self, text: str) -> str:
        """The distinct characters of `text` that are not in the vocabulary, in order of appearance."""
        index = self._index
        return "".join(dict.fromkeys(char for char in text if char not in index))

    def encode(self, text: str, argument: str = "text") -> torch.Tensor:
        """(len(text),) int64 indices; InvalidArgument naming `argument` and the unknown characters."""
        missing = self.missing(text)
        if missing:
            shown = ", ".join(repr(char) for char in missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise InvalidArgument(
                "charlm",
                argument,
                f"must use only characters of the model's vocabulary ({len(self)} characters); "
                f"got {len(missing)} other{'s' if len(missing) > 1 else ''}: {shown}",
            )
        index = self._index
        return torch.tensor([index[char] for char in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.chars[k] for k in values)

    def to_dict(self) -> dict[str, str]:
        """A JSON-able form, stored with checkpoints."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Vocabulary:
        return cls(data["chars"])


def split_point(length: int, train_fraction: float = TRAIN_FRACTION) -> int:
    """Index of the first validation character of a corpus of `length` characters."""
    return int(length * train_fraction)


def split(ids: torch.Tensor, train_fraction: float = TRAIN_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `train_fraction` of the stream for training, the rest for validation."""
    cut = split_point(len(ids), train_fraction)
    return ids[:cut], ids[cut:]


def minimum_length(batch_size: int, seq_len: int, train_fraction: float = TRAIN_FRACTION) -> int:
    """Fewest characters a corpus needs: one batch plus one in its training part, two in validation."""
    need_train = batch_size * seq_len + 1
    length = need_train
    while split_point(length, train_fraction) < need_train or length - split_point(length, train_fraction) < 2:
        length += 1
    return length


def check_length(text: str, batch_size: int, seq_len: int, source: str) -> None:
    """InvalidArgument when `text` is too short for one training batch."""
    need = minimum_length(batch_size, seq_len)
    if len(text) < need:
        raise InvalidArgument(
            "charlm",
            "corpus",
            f"must have at least {need} characters to hold one batch of "
            f"{batch_size} x {seq_len} in its {TRAIN_FRACTION:.0%} training part; {source} has {len(text)}",
        )


class Streams:
    """char-rnn's contiguous batches over one stream of character indices.

    The stream (N,) is cut into `batch_size` rows of equal length (the remainder
    dropped); batch k holds columns [k*seq_len, (k+1)*seq_len) of every row, so row b
    of batch k+1 continues row b of batch k. With `drop_last`, only full chunks are
    produced (training: every batch has the same shape); otherwise the last chunk may
    be shorter, so that every character is used (validation).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, drop_last: bool = True) -> None:
        if ids.dim() != 1 or len(ids) < 2:
            raise InvalidArgument("Streams", "ids", f"must be 1-D with at least 2 entries; got shape {tuple(ids.shape)}")
        self.batch_size = max(1, min(batch_size, (len(ids) - 1) // (seq_len if drop_last else 1)))
        self.seq_len = seq_len
        per_row = (len(ids) - 1) // self.batch_size
        rows = ids[: self.batch_size * per_row + 1]
        self.inputs = rows[:-1].view(self.batch_size, per_row)
        self.targets = rows[1:].view(self.batch_size, per_row)
        self.num_batches = per_row // seq_len if drop_last else -(-per_row // seq_len)

    def __len__(self) -> int:
        return self.num_batches

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k (0 <= k < len(self)): (inputs, targets), each (B, T)."""
        if not 0 <= k < self.num_batches:
            raise IndexError(f"Streams.batch: k must be in [0, {self.num_batches}); got {k}")
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self.inputs[:, cols], self.targets[:, cols]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(self.num_batches):
            yield self.batch(k)

    @property
    def num_chars(self) -> int:
        """Characters predicted in one pass over all batches."""
        return self.batch_size * min(self.num_batches * self.seq_len, self.inputs.shape[1])

"""Generating text from a character-level language model, one character at a time.

The prime is read in one pass; after it, each step feeds the last character with
the carried state, so producing n characters costs n single steps, not n passes over
a growing prefix. Draws come from a seeded `torch.Generator`: the same seed gives
the same text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from lstmlab.charlm.corpus import Vocabulary
from lstmlab.errors import InvalidArgument

Step = Callable[[Tensor, Any], tuple[Tensor, Any]]
"""step(ids (T, 1) int64, time-major, state or None) -> (logits (T, 1, V), new state)."""


def check_options(temperature: float, top_k: int, length: int) -> None:
    """InvalidArgument naming the option when temperature, top_k or length is out of range."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise InvalidArgument(
            "sample", "temperature", f"must be a finite number >= 0 (0 picks the most likely character); got {temperature!r}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise InvalidArgument("sample", "top_k", f"must be an integer >= 0 (0 keeps every character); got {top_k!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise InvalidArgument("sample", "length", f"must be an integer >= 0; got {length!r}")


def encode_prime(vocab: Vocabulary, prime: str) -> Tensor:
    """The prime's ids (len(prime),); InvalidArgument if it is empty or uses characters outside `vocab`."""
    if not prime:
        raise InvalidArgument("sample", "prime", "must have at least one character; got ''")
    return vocab.encode(prime, argument="prime")


def next_distribution(logits: Tensor, temperature: float, top_k: int = 0) -> Tensor:
    """Probabilities (V,) to draw the next character from, given logits (V,).

    Logits are divided by the temperature; with top_k > 0 all but the k largest are
    excluded. Temperature 0 puts all the mass on the most likely character, and so does a
    temperature so small that the scaled logits overflow (e.g. 1e-310): its limit.
    """
    logits = logits.detach()
    if logits.dtype != torch.float32:
        logits = logits.float()
    if temperature == 0:
        return _most_likely(logits)
    scaled = logits / temperature
    # Overflow needs an infinite scaled logit: one reduction rules it out (this runs once a
    # character, so ops count), the elementwise test decides when infinities are there.
    if not math.isfinite(float(torch.linalg.vector_norm(scaled, ord=math.inf))) and bool(
        (torch.isinf(scaled) & torch.isfinite(logits)).any()
    ):
        return _most_likely(logits)
    if 0 < top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.softmax(scaled, dim=-1)


def _most_likely(logits: Tensor) -> Tensor:
    probs = torch.zeros_like(logits)
    probs[int(logits.argmax())] = 1.0
    return probs


def generate(
    step: Step,
    vocab: Vocabulary,
    prime: str,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> Iterator[str]:
    """Yield `length` characters that continue `prime`, one at a time, as they are drawn.

    `prime` must be non-empty and use only characters of `vocab` (`encode_prime`).
    The options are checked at the first draw, as in any generator; call
    `check_options` and `encode_prime` first to check them before.
    """
    check_options(temperature, top_k, length)
    ids = encode_prime(vocab, prime)
    generator = torch.Generator().manual_seed(seed)
    chars = vocab.chars
    tokens: dict[int, Tensor] = {}  # each character's (1, 1) input, made once: no tensor built per step
    with torch.no_grad():
        logits, state = step(ids[:, None], None)
        k = -1
        for n in range(length):
            if n:
                token = tokens.get(k)
                if token is None:
                    token = tokens[k] = torch.tensor([[k]], dtype=torch.int64)
                logits, state = step(token, state)
            probs = next_distribution(logits[-1, 0], temperature, top_k)
            k = int(torch.multinomial(probs, 1, generator=generator))
            yield chars[k]


def default_prime(vocab: Vocabulary) -> str:
    """The prime used when none is given: a line break if the vocabulary has one."""
    return "\n" if "\n" in vocab else vocab.chars[0]


def model_step(model: torch.nn.Module) -> Step:
    """The `Step` of a `lstmlab.models.SequenceModel` with token inputs, run in eval mode on
    the model's device; the logits come back on the CPU, where the draws are made (so a
    model on CUDA gives the text the same model gives on the CPU, but for rounding)."""
    model.eval()
    device = next(model.parameters()).device

    def step(ids: Tensor, state: Any) -> tuple[Tensor, Any]:
        logits, state = model(ids.to(device), state)
        return logits.cpu(), state

    return step

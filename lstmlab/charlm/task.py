"""Character-level language modelling (char-rnn, Karpathy 2015) on any UTF-8 text.

The corpus is a text file or, without one, the Python language reference that ships
with CPython (`lstmlab.charlm.corpus.default_text`). Its first 90% trains, the last 10%
validates. Training batches are contiguous chunks of B parallel streams
(`lstmlab.charlm.corpus.Streams`): batch k+1 continues batch k, so the trainer carries the
detached state across them (truncated BPTT) and restarts it with each pass over the
text. Each pass first rotates the training text by an offset drawn from (seed, pass),
so that the streams start at new places and the chunk boundaries move: the passes
differ, while every row stays contiguous (but for one seam, where the rotation joins
the end of the text to its start). A batch is a pure function of (step, seed).

Inputs are character ids (T, B) that the model one-hot encodes; outputs are logits
(T, B, V) over the V characters of the vocabulary; the loss is the cross-entropy in
nats per character. Validation reports it in nats (`loss`) and bits (`bpc`).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmlab import _checks
from lstmlab.charlm.corpus import Streams, Vocabulary, check_length, default_text, read_text, split, split_point
from lstmlab.errors import InvalidArgument, LstmlabError, WrongType
from lstmlab.tasks.base import Batch, Predict, Task, train_rng

_ROTATION = 0xC4A1  # salt of the per-pass rotation's random stream


class CharLM(Task):
    """Next-character prediction on a text; see the module docstring.

    text: path of a UTF-8 file, or None for the default corpus. The file is read on
    first use (sizes, batches or evaluation), not at construction.
    """

    token_inputs = True
    metric = "loss"
    higher_is_better = False
    forget_bias = 0.0  # measured: a 2 x 256 LSTM on tiny-shakespeare learns faster from 0 than from 1 (docs/charlm.md)
    # measured (docs/charlm.md): without dropout a 2 x 256 LSTM overfits tiny-shakespeare within 15
    # minutes; with layer normalisation it learns several times faster per step (1.52 nats after 500
    # steps against 1.81) and ends lower in 15 minutes although each step costs more; weight dropout
    # and zoneout were behind at every step of the ablation
    regularisers: ClassVar[dict[str, Any]] = {"dropout": 0.2, "layer_norm": True}
    # measured (docs/charlm.md): a cosine decay over the run (over the budget with --max-minutes)
    # ends 0.017 nats lower after 1,170 steps than the constant rate, on each of three seeds
    lr_schedule = "cosine"

    def __init__(self, *, text: str | None = None, seq_len: int = 100, batch_size: int = 64) -> None:
        if text is not None and not isinstance(text, str):
            raise WrongType("charlm", "text", f"must be a file path (str) or None; got {type(text).__name__}")
        self.text = text
        self.seq_len = _checks.positive_int("charlm", "seq_len", seq_len)
        self.batch_size = _checks.positive_int("charlm", "batch_size", batch_size)
        self._vocab: Vocabulary | None = None
        self._corpus: str | None = None
        self._streams: tuple[Streams, Streams] | None = None
        self._baseline: float | None = None

    # -- data, loaded on first use -------------------------------------------------

    @property
    def source(self) -> str:
        """Where the corpus comes from, for messages and reports."""
        return repr(self.text) if self.text is not None else "the Python language reference (pydoc_data.topics)"

    def corpus(self) -> str:
        """The whole text (read once); InvalidArgument if unreadable, not UTF-8, empty or shorter than one batch."""
        if self._corpus is None:
            corpus = read_text(self.text) if self.text is not None else default_text()
            check_length(corpus, self.batch_size, self.seq_len, self.source)
            self._corpus = corpus
        return self._corpus

    def validation_text(self) -> str:
        """The last 10% of the corpus, the part the model never trains on."""
        corpus = self.corpus()
        return corpus[split_point(len(corpus)) :]

    @property
    def vocabulary(self) -> Vocabulary:
        """The characters of the corpus, or those restored from a checkpoint."""
        if self._vocab is None:
            self._vocab = Vocabulary.from_text(self.corpus())
        return self._vocab

    @property
    def input_size(self) -> int:  # type: ignore[override]
        return len(self.vocabulary)

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return len(self.vocabulary)

    def streams(self) -> tuple[Streams, Streams]:
        """(training streams, validation streams) over the encoded corpus."""
        if self._streams is None:
            source = f"the corpus {self.source}"
            ids = self.vocabulary.encode(self.corpus(), argument=source)
            train, valid = split(ids)
            self._streams = (
                Streams(train, self.batch_size, self.seq_len, drop_last=True),
                Streams(valid, self.batch_size, self.seq_len, drop_last=False),
            )
        return self._streams

    # -- the Task interface --------------------------------------------------------

    def pass_streams(self, epoch: int, seed: int) -> Streams:
        """The training streams of pass `epoch` (0-based) of a run seeded `seed`: the training
        text rotated by an offset drawn from (seed, epoch), cut as `streams()` cuts it."""
        key = (epoch, seed)
        cached = getattr(self, "_pass", None)
        if cached is None or cached[0] != key:
            train, _ = self.streams()
            ids = torch.cat([train.inputs.reshape(-1), train.targets.reshape(-1)[-1:]])
            offset = int(train_rng(seed, epoch, _ROTATION).integers(len(ids)))
            rotated = torch.cat([ids[offset:], ids[:offset]])
            cached = self._pass = (key, Streams(rotated, train.batch_size, self.seq_len, drop_last=True))
        return cached[1]

    def train_batch(self, step: int, seed: int) -> Batch:
        n = len(self.streams()[0])
        k = step % n
        inputs, targets = self.pass_streams(step // n, seed).batch(k)
        return Batch(inputs=inputs.T.contiguous(), targets=targets.T.contiguous(), continues=k != 0)

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), batch.targets.reshape(-1))

    def evaluate(self, predict: Predict) -> dict[str, float]:
        _, valid = self.streams()
        total, state = 0.0, None
        for inputs, targets in valid:
            outputs, state = predict(inputs.T.contiguous(), state)
            total += float(F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.T.reshape(-1), reduction="sum"))
        nats = total / valid.num_chars
        return {"loss": nats, "bpc": nats / math.log(2)}

    def solved(self, metrics: dict[str, float]) -> bool:
        return False

    @property
    def baseline(self) -> float:  # type: ignore[override]
        """Validation loss (nats per character) of the best predictor that sees only the current
        character: bigram frequencies of the training text, add-one smoothed."""
        if self._baseline is None:
            train, valid = self.streams()
            V = len(self.vocabulary)
            counts = torch.ones(V, V, dtype=torch.float64)
            pairs = train.inputs.reshape(-1) * V + train.targets.reshape(-1)
            counts += torch.bincount(pairs, minlength=V * V).reshape(V, V).double()
            log_p = (counts / counts.sum(dim=1, keepdim=True)).log()
            x, y = valid.inputs.reshape(-1), valid.targets.reshape(-1)
            self._baseline = float(-log_p[x, y].mean()) + 0.0  # + 0.0: a one-character corpus gives 0, not -0
        return self._baseline

    def corpus_digest(self) -> str:
        """The SHA-256 of the corpus (of its characters, as UTF-8), which identifies it."""
        if getattr(self, "_digest", None) is None:
            self._digest = hashlib.sha256(self.corpus().encode("utf-8")).hexdigest()
        return self._digest

    def state_dict(self) -> dict[str, Any]:
        """The vocabulary, and the corpus's resolved path and digest (so that a resume can
        tell that its corpus moved or changed)."""
        return {"vocabulary": self.vocabulary.to_dict(), "corpus": {"text": self.text, "sha256": self.corpus_digest()}}

    def verify_state(self, state: dict[str, Any]) -> None:
        """InvalidArgument (about `text`) unless the corpus is the one `state` was taken from."""
        stored = state.get("corpus")
        if not isinstance(stored, dict) or not isinstance(stored.get("sha256"), str):
            return  # a checkpoint from before corpora were identified
        try:
            digest = self.corpus_digest()
        except LstmlabError as error:
            if self.text is None:
                raise
            raise InvalidArgument(
                "charlm",
                "text",
                f"must name the run's corpus, which cannot be read ({error.detail}); if it moved, give its new place",
            ) from None
        if digest != stored["sha256"]:
            now = self.source if self.text == stored.get("text") else f"{self.source} (the run trained on {stored.get('text')!r})"
            raise InvalidArgument(
                "charlm",
                "text",
                f"must be the corpus the run trained on; {now} has other content "
                f"(sha256 {digest[:12]}..., the run's {stored['sha256'][:12]}...)",
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vocab = Vocabulary.from_dict(state["vocabulary"])
        if vocab != self._vocab:
            self._vocab = vocab
            self._streams = None
            self._baseline = None

"""A trained run in one line: `lstmlab.load(run_dir)` -> the model, its config, task and metrics.

    run = lstmlab.load("runs/shakespeare")
    print(run.generate("ROMEO:", length=200, seed=0))
    logits, state = run.model(ids)  # (T, B) int64 ids -> (T, B, V) logits

The checkpoint is read by `lstmlab.train.load_run`; this module adds the metrics,
the device choice and text generation for character-level language models.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lstmlab.errors import InvalidArgument, LstmlabError, Unsupported, WrongType
from lstmlab.models import SequenceModel
from lstmlab.tasks.base import Task

if TYPE_CHECKING:
    from lstmlab.train import TrainConfig

METRICS = "metrics.jsonl"  # as `lstmlab.train` writes it


@dataclass
class Run:
    """A trained run, ready to use.

    - `model`: the `lstmlab.models.SequenceModel`, weights loaded, in eval mode, on `device`.
      inputs (T, B, input_size) float, or (T, B) int64 ids for token tasks; returns
      outputs (T, B, output_size) and the final recurrent state.
    - `config`: the `lstmlab.train.TrainConfig` it was trained with.
    - `task`: the task, rebuilt from its stored options and state (a charlm run's vocabulary).
    - `metrics`: the records of metrics.jsonl, oldest first (`{"kind": "train" | "eval", "step": ...}`).
    - `step`: the training step of the checkpoint.
    """

    model: SequenceModel
    config: TrainConfig
    task: Task
    metrics: list[dict[str, Any]]
    step: int
    run_dir: Path
    device: torch.device

    def generate(
        self, prime: str = "", length: int = 200, temperature: float = 1.0, top_k: int = 0, seed: int | None = None
    ) -> str:
        """Text of a charlm run: `prime` followed by `length` drawn characters.

        The same as `lstmlab sample RUN_DIR` prints for the same arguments (`--prime`,
        `--length`, `--temperature`, `--top-k`, `--seed`): an empty prime starts from a
        line break (or the vocabulary's first character), which is not returned, as the
        command does not print it. `seed=None` draws a fresh seed; an int gives the same
        text every time. Temperature 0 is greedy; top_k > 0 draws among the k most likely.

        Example:
            >>> run = lstmlab.load("runs/tiny")
            >>> text = run.generate("The ", length=20, seed=0)  # "The " and 20 more characters
        """
        from lstmlab.charlm.sampling import check_options, default_prime, encode_prime, generate, model_step
        from lstmlab.charlm.task import CharLM

        if not isinstance(self.task, CharLM):
            raise Unsupported("Run.generate", "", f"needs a charlm run; {str(self.run_dir)!r} holds a {self.config.task!r} run")
        if not isinstance(prime, str):
            raise WrongType("Run.generate", "prime", f"must be a str; got {type(prime).__name__}")
        if seed is None:
            seed = secrets.randbits(63)
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidArgument("Run.generate", "seed", f"must be a non-negative int or None; got {seed!r}")
        vocab = self.task.vocabulary
        start = prime or default_prime(vocab)
        try:
            check_options(temperature, top_k, length)
            encode_prime(vocab, start)
        except LstmlabError as error:  # named as Run.generate, the method called, not `sample` or `charlm`
            raise error.relabel(owner="Run.generate") from None
        drawn = "".join(generate(model_step(self.model), vocab, start, length, temperature, top_k, seed))
        return prime + drawn


def load(run_dir: str | Path, map_location: str | torch.device | None = None, *, device: str | torch.device | None = None) -> Run:
    """The run trained into `run_dir` (by `lstmlab train` or `lstmlab.train.Trainer`), at its checkpoint.

    The model lands on the CPU unless `map_location` or `device` (the same thing under
    torch's and lstmlab's names; give one) says otherwise, in eval mode.

    Example:
        >>> run = lstmlab.load("runs/adding")
        >>> outputs, state = run.model(torch.randn(50, 1, 2))
        >>> run.metrics[-1]["kind"]
        'eval'
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise WrongType("load", "run_dir", f"must be a path (str or os.PathLike); got {type(run_dir).__name__}")
    if map_location is not None and device is not None and torch.device(map_location) != torch.device(device):
        raise InvalidArgument("load", "device", f"must agree with map_location={map_location!r} (give one); got {device!r}")
    where = device if device is not None else map_location
    if where is not None and not isinstance(where, (str, torch.device)):
        raise WrongType("load", "device", f"must be a str or torch.device; got {type(where).__name__}")
    target = torch.device("cpu" if where is None else where)
    if target.type not in ("cpu", "cuda"):  # a model on "meta" has no weights: nothing would run
        raise InvalidArgument("load", "device", f"must be cpu, cuda or cuda:N; got {str(target)!r}")
    if target.type == "cuda" and not torch.cuda.is_available():  # else torch's AssertionError from deep inside .to()
        raise Unsupported("load", "device", f"needs CUDA, which this torch build or machine lacks; got {str(target)!r}")
    from lstmlab.train import load_run  # lstmlab.train imports the package's version: import it once lstmlab is

    try:
        loaded = load_run(run_dir, device=str(target))
    except LstmlabError as error:  # named as `load`, the function called, not `train`
        raise error.relabel(owner="load") from None
    return Run(
        model=loaded.model,
        config=loaded.config,
        task=loaded.task,
        metrics=read_metrics(run_dir),
        step=loaded.step,
        run_dir=Path(run_dir),
        device=target,
    )


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `run_dir`/metrics.jsonl, oldest first; [] when the file is absent.
    A line cut short by a kill mid-write (the last one) is left out."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise InvalidArgument(
                "load", "run_dir", f"holds a metrics.jsonl whose line {n + 1} is not JSON: {line[:80]!r}"
            ) from None
    return records

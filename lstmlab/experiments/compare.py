"""Train several cells on one task with the same seed, data and budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lstmlab.errors import InvalidArgument
from lstmlab.train import TrainConfig, Trainer


@dataclass
class CellResult:
    """One cell's run: its summary and its held-out curve [(step, primary metric)]."""

    cell: str
    summary: dict[str, Any]
    curve: list[tuple[int, float]] = field(default_factory=list)
    trainer: Trainer | None = None


class Comparison:
    """Trains `cells` one after another with `config` (only the cell differs).

    `run()` yields (cell, trainer, record) for every record of every run; the
    results are in `results` as each run ends. With `out_dir`, each cell's run
    directory is out_dir/CELL.
    """

    def __init__(self, config: TrainConfig, cells: list[str], out_dir: str | Path | None = None) -> None:
        if not cells:
            raise InvalidArgument("compare", "cells", "must name at least one cell; got none")
        self.configs = [replace(config, cell=cell).check() for cell in cells]
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.results: list[CellResult] = []

    def run(
        self, records: Callable[[Trainer], Iterator[dict[str, Any]]] = Trainer.run
    ) -> Iterator[tuple[str, Trainer, dict[str, Any]]]:
        """Yield (cell, trainer, record); `records(trainer)` gives a run's records
        (default `trainer.run()`; the CLI wraps it in a progress bar)."""
        for config in self.configs:
            run_dir = None if self.out_dir is None else self.out_dir / config.cell
            trainer = Trainer(config, run_dir)
            result = CellResult(config.cell, {}, trainer=trainer)
            metric = trainer.task.metric
            for record in records(trainer):
                if record["kind"] == "eval":
                    result.curve.append((record["step"], record[metric]))
                yield config.cell, trainer, record
            result.summary = trainer.summary()
            self.results.append(result)

    def rows(self) -> list[dict[str, Any]]:
        """The table: one row per cell (summary fields, plus steps_to_solve)."""
        return [{**r.summary, "steps_to_solve": r.summary["solved_at"]} for r in self.results]

"""Train several cells on one task with the same seed, data and budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lstmlab.errors import InvalidArgument
from lstmlab.run_dir import CHECKPOINT, METRICS, read_checkpoint, read_metrics
from lstmlab.train import RESUME_CHANGES, TrainConfig, Trainer, conflict_error, resume_conflicts

OUTPUTS = ("results.json", "curves.png")
"""What a comparison writes in its directory besides the cells' run directories."""


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
    directory is out_dir/CELL, and a directory that already holds a comparison is
    refused unless `resume` (a finished cell is kept, an unfinished one continued, a
    missing one run; the stored runs must be defined as `config` defines them, but for
    `RESUME_CHANGES`) or `overwrite` (the cells' runs and the outputs are removed first).
    """

    def __init__(
        self,
        config: TrainConfig,
        cells: list[str],
        out_dir: str | Path | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        if not cells:
            raise InvalidArgument("compare", "cells", "must name at least one cell; got none")
        if resume and overwrite:
            raise InvalidArgument("compare", "overwrite", "cannot go with resume; choose one")
        self.configs = [replace(config, cell=cell).check() for cell in cells]
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.resume, self.overwrite = resume, overwrite
        self.results: list[CellResult] = []
        if self.out_dir is not None:
            self._check_out_dir()

    def _check_out_dir(self) -> None:
        """Refuse an earlier comparison in out_dir (unless resume or overwrite), or, with resume,
        stored runs that `config` does not define."""
        assert self.out_dir is not None
        stored = [c for c in self.configs if (self.out_dir / c.cell / CHECKPOINT).exists()]
        if self.resume:
            for config in stored:
                run_dir = self.out_dir / config.cell
                checkpoint = read_checkpoint(run_dir, owner="compare")
                try:
                    previous = TrainConfig.from_stored(checkpoint["config"]).check()
                except (ValueError, TypeError) as error:
                    raise InvalidArgument("compare", "run_dir", f"must hold a readable run; {str(run_dir)!r}: {error}") from None
                differ = resume_conflicts(previous, config)
                if differ:
                    raise conflict_error("compare", "resume", run_dir, differ)
        elif not self.overwrite and (stored or any((self.out_dir / name).exists() for name in OUTPUTS)):
            held = f"got {str(self.out_dir)!r}, which already holds a comparison (resume it, overwrite it or choose another)"
            raise InvalidArgument("compare", "out_dir", f"must be new; {held}")
        if self.overwrite:
            for name in OUTPUTS:
                (self.out_dir / name).unlink(missing_ok=True)

    def _trainer(self, config: TrainConfig) -> Trainer:
        """The trainer of one cell: new, or continued from its run directory (`resume`)."""
        run_dir = None if self.out_dir is None else self.out_dir / config.cell
        if run_dir is not None and self.resume and (run_dir / CHECKPOINT).exists():
            return Trainer.resume(run_dir, **{name: getattr(config, name) for name in RESUME_CHANGES})
        return Trainer(config, run_dir, overwrite=self.overwrite)

    def run(
        self, records: Callable[[Trainer], Iterator[dict[str, Any]]] = Trainer.run
    ) -> Iterator[tuple[str, Trainer, dict[str, Any]]]:
        """Yield (cell, trainer, record); `records(trainer)` gives a run's records
        (default `trainer.run()`; the CLI wraps it in a progress bar)."""
        for config in self.configs:
            trainer = self._trainer(config)
            result = CellResult(config.cell, {}, trainer=trainer)
            metric = trainer.task.metric
            if trainer.run_dir is not None:  # the curve so far, of a resumed run
                for record in read_metrics(trainer.run_dir / METRICS):
                    if record.get("kind") == "eval" and metric in record:
                        result.curve.append((record["step"], record[metric]))
            try:
                for record in records(trainer):
                    if record["kind"] == "eval":
                        result.curve.append((record["step"], record[metric]))
                    yield config.cell, trainer, record
            finally:
                trainer.close()
            result.summary = trainer.summary()
            self.results.append(result)

    def rows(self) -> list[dict[str, Any]]:
        """The table: one row per cell (summary fields, plus steps_to_solve)."""
        return [{**r.summary, "steps_to_solve": r.summary["solved_at"]} for r in self.results]

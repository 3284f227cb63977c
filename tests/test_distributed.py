"""Training in two processes (DistributedDataParallel over gloo, on the CPU) against one
process with the same global batch: the same losses, parameters and held-out metric.

One spawn of two processes runs every two-process scenario (starting processes is the
expensive part); the single-process references run here.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lstmlab import tasks
from lstmlab.cli import main
from lstmlab.distributed import World
from lstmlab.errors import InvalidArgument, LstmlabError
from lstmlab.train import CONFIG, METRICS, TrainConfig, Trainer, read_checkpoint

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend, which this build of torch lacks",
)

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(60))  # ~3.5 KB


def configs(text: str) -> dict[str, TrainConfig]:
    """The scenarios, by name: tiny models, a few steps, global batches of 4 sequences."""
    # no dropout (charlm's default has it): each process draws its own masks, so only runs
    # without it can equal one process draw for draw; a constant rate (charlm's cosine spans
    # `steps`, which a resume below raises)
    common = {"hidden": 8, "lr": 0.02, "eval_every": 2, "log_every": 1, "backend": "eager", "dropout": 0.0}
    common["lr_schedule"] = "constant"
    return {
        "long-lag": TrainConfig(task="long-lag", task_options={"seq_len": 6, "batch_size": 4}, steps=4, **common),
        "reber": TrainConfig(task="reber", task_options={"batch_size": 4, "eval_size": 8}, steps=3, **common),
        "charlm": TrainConfig(task="charlm", task_options={"text": text, "seq_len": 8, "batch_size": 4}, steps=6, **common),
    }


def parameters(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])


def steps(trainer: Trainer, world: World) -> dict[str, Any]:
    """Train to the end; the per-step losses, the largest difference between the processes'
    parameters after each step, the final parameters and evaluation."""
    losses, spread = [], []
    for record in trainer.run():
        if record["kind"] == "step":
            losses.append(record["loss"])
            if world.size > 1:
                mine = parameters(trainer)
                spread.append(max(float((mine - other).abs().max()) for other in world.gather(mine)))
    return {
        "losses": losses,
        "spread": spread,
        "parameters": parameters(trainer),
        "eval": trainer.last_eval,
        "step": trainer.step,
    }


def worker(rank: int, store: str, tmp: str) -> None:
    """One of the two processes: every scenario, results to tmp/rank{rank}.pt."""
    from lstmlab.distributed import join, leave

    faulthandler.dump_traceback_later(120, exit=True)  # a collective that waits for ever fails the test instead
    torch.set_num_threads(1)
    world = join("cpu", init_method=f"file://{store}", rank=rank, world_size=2)
    root = Path(tmp)
    results: dict[str, Any] = {}
    for name, config in configs(str(root / "text.txt")).items():
        with Trainer(config, root / f"two-{name}", world=world) as trainer:
            results[name] = steps(trainer, world)
    # a run directory that already holds a run: rank 0 refuses it, and rank 1 stops with it
    try:
        Trainer(configs(str(root / "text.txt"))["charlm"], root / "two-charlm", world=world)
    except (ValueError, LstmlabError) as error:
        results["refused"] = str(error)
    # the charlm run again, stopped at step 3 (mid-stream: the state is carried) and resumed
    config = configs(str(root / "text.txt"))["charlm"]
    config.steps = 3
    with Trainer(config, root / "two-resumed", world=world) as trainer:
        steps(trainer, world)
    with Trainer.resume(root / "two-resumed", steps=6, world=world) as trainer:
        results["resumed"] = steps(trainer, world)
    # a Ctrl-C in rank 1 alone, during step 2: both stop before step 3's update
    config = configs(str(root / "text.txt"))["long-lag"]
    with Trainer(config, root / "two-interrupted", world=world) as trainer:
        for record in trainer.run():
            if record["kind"] == "step" and record["step"] == 2 and rank == 1:
                os.kill(os.getpid(), signal.SIGINT)
        results["interrupted"] = {"step": trainer.step, "interrupted": trainer.interrupted, "saved": trainer.checkpoint_step}
    # a wall-clock budget spent by the first step (on rank 0's clock): both stop after it
    config = configs(str(root / "text.txt"))["long-lag"]
    config.max_minutes = 1e-9
    with Trainer(config, root / "two-timed", world=world) as trainer:
        results["timed"] = steps(trainer, world)
    torch.save(results, root / f"rank{rank}.pt")
    leave(world)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The two processes' results (and the directory of their runs)."""
    root = tmp_path_factory.mktemp("two")
    (root / "text.txt").write_text(TEXT)
    sys.path.insert(0, str(Path(__file__).parent))  # (the spawned processes import this module)
    try:
        torch.multiprocessing.start_processes(
            worker, args=(str(root / "store"), str(root)), nprocs=2, join=True, start_method="spawn"
        )
    finally:
        sys.path.remove(str(Path(__file__).parent))
    return root, [torch.load(root / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def one(two: tuple[Path, list[dict[str, Any]]]) -> dict[str, Any]:
    """The same scenarios in one process (no run directory)."""
    root, _ = two
    return {name: steps(Trainer(config), World()) for name, config in configs(str(root / "text.txt")).items()}


@pytest.mark.parametrize("name", ["long-lag", "reber", "charlm"])
def test_two_processes_train_as_one_with_the_global_batch(name: str, two: Any, one: dict[str, Any]) -> None:
    _, ranks = two
    single = one[name]
    assert len(single["losses"]) == configs("")[name].steps
    for rank in ranks:
        result = rank[name]
        assert result["spread"] == [0.0] * len(single["losses"])  # identical parameters after every step
        assert result["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
        torch.testing.assert_close(result["parameters"], single["parameters"], rtol=1e-5, atol=1e-5)
        metric = "last_loss" if name == "long-lag" else "loss"
        assert result["eval"][metric] == pytest.approx(single["eval"][metric], rel=1e-5)
    assert ranks[0][name]["losses"] == ranks[1][name]["losses"]  # the whole batch's loss, in both


def test_rank0_writes_the_run_and_records_the_world(two: Any) -> None:
    root, _ = two
    config = json.loads((root / "two-charlm" / CONFIG).read_text())
    assert (config["world_size"], config["dist_backend"]) == (2, "gloo")
    records = [json.loads(line) for line in (root / "two-charlm" / METRICS).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]  # once each, not once per process
    checkpoint = read_checkpoint(root / "two-charlm")
    assert checkpoint["world_size"] == 2
    assert checkpoint["carry"][0].shape == (1, 4, 8)  # the state of all 4 streams, gathered from both


def test_a_process_that_cannot_start_stops_the_others(two: Any) -> None:
    _, ranks = two
    assert "run_dir must be new" in ranks[0]["refused"]
    assert ranks[1]["refused"] == "train: stopped with the process(es) of rank 0, which failed (see their error)"


def test_a_resumed_two_process_run_continues_exactly(two: Any) -> None:
    root, ranks = two
    for rank in ranks:
        assert rank["resumed"]["losses"] == rank["charlm"]["losses"][3:]
        assert torch.equal(rank["resumed"]["parameters"], rank["charlm"]["parameters"])

    def timeless(run: str) -> list[dict[str, Any]]:
        """The records but timings, the evaluation of step 3 (the stopped run's last) and the note of the resume."""
        records = [json.loads(line) for line in (root / run / METRICS).read_text().splitlines()]
        kept = [r for r in records if (r["kind"], r["step"]) != ("eval", 3) and r["kind"] != "resume"]
        return [{k: v for k, v in r.items() if k not in ("seconds", "steps_per_second")} for r in kept]

    assert timeless("two-resumed") == timeless("two-charlm")


def test_a_ctrl_c_in_one_process_stops_both_at_the_same_step(two: Any) -> None:
    root, ranks = two
    assert [r["interrupted"] for r in ranks] == [{"step": 2, "interrupted": True, "saved": 2}] * 2
    assert read_checkpoint(root / "two-interrupted")["step"] == 2


def test_a_spent_time_budget_stops_both_after_the_same_step(two: Any) -> None:
    root, ranks = two
    assert [r["timed"]["step"] for r in ranks] == [1, 1]
    assert [r["timed"]["eval"]["step"] for r in ranks] == [1, 1]  # the last step is evaluated
    assert read_checkpoint(root / "two-timed")["step"] == 1


def test_resume_with_another_number_of_processes_is_refused(two: Any, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = two
    with pytest.raises(
        InvalidArgument, match=r"world_size must be the run's number of processes; .* trained by 2, this run has 1"
    ):
        Trainer.resume(root / "two-charlm", steps=8)
    assert main(["train", "--resume", str(root / "two-charlm"), "--steps", "8", "--nproc", "3"]) == 2
    assert "--nproc must be the run's number of processes" in capsys.readouterr().err


def test_a_batch_the_processes_cannot_share_equally_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--task", "adding", "--seq-len", "5", "--batch", "5", "--hidden", "8", "--steps", "2"]
    assert main([*argv, "--nproc", "2", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "train: --batch must be divisible by the number of processes, 2 (each takes an equal share); got 5"
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name", tasks.names())
def test_the_shards_of_a_batch_are_the_batch(name: str, tmp_path: Path) -> None:
    """For every task: the processes' shards, put side by side, give back the whole batch
    (inputs, targets, mask, lengths, extras), each a contiguous block of its sequences."""
    (tmp_path / "text.txt").write_text(TEXT)
    options = {"batch_size": 6, **({"text": str(tmp_path / "text.txt")} if name == "charlm" else {})}
    batch = tasks.get(name, **options).train_batch(3, seed=1)
    shards = [batch.shard(rank, 3) for rank in range(3)]
    assert [s.size for s in shards] == [2, 2, 2]

    def joined(get: Any, dim: int) -> torch.Tensor:
        return torch.cat([get(s) for s in shards], dim=dim)

    assert torch.equal(joined(lambda s: s.inputs, 1), batch.inputs)
    assert torch.equal(joined(lambda s: s.targets, batch.target_batch_dim), batch.targets)
    assert batch.targets.shape[batch.target_batch_dim] == 6
    if batch.mask is not None:
        assert torch.equal(joined(lambda s: s.mask, 1), batch.mask)
    if batch.lengths is not None:
        assert torch.equal(joined(lambda s: s.lengths, 0), batch.lengths)
    for key, value in batch.extra.items():
        assert torch.equal(joined(lambda s, key=key: s.extra[key], 1), value)
    with pytest.raises(InvalidArgument, match="world_size must divide the batch size 6; got 4"):
        batch.shard(0, 4)


@pytest.mark.slow
def test_train_nproc_runs_torchrun(tmp_path: Path) -> None:
    """`lstmlab train --nproc 2` end to end: torchrun starts the processes; rank 0 writes the run."""
    import subprocess

    out = tmp_path / "run"
    argv = ["train", "--task", "adding", "--seq-len", "5", "--batch", "4", "--hidden", "8", "--steps", "3", "--eval-every", "3"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "lstmlab", *argv, "--nproc", "2", "--out", str(out), "--json", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == 3
    assert json.loads((out / CONFIG).read_text())["world_size"] == 2

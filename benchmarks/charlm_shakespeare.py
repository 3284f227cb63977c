"""Character-level language model under a wall-clock budget, through the shared trainer.

Train (one cell per call; run them one after another, not side by side, so that
they get the same machine):

    python benchmarks/fetch_tinyshakespeare.py    # once: data/tinyshakespeare.txt
    python benchmarks/charlm_shakespeare.py data/tinyshakespeare.txt --cell lstm --minutes 15 --out runs/charlm/lstm

trains a 2 x 256 model (batch 64, sequence 100, Adam 2e-3, gradient norm clipped at 1,
dropout 0.2 between layers, forget bias 0) until the budget is spent, evaluating on the
validation text (the last 10%) every `--eval-every` steps, then writes `result.json`
(the validation curve in nats per character against minutes, the best and final
losses, a sample) into the run directory, which `lstmlab sample` and `lstmlab
inspect` also read. The budget is the trainer's `max_minutes` (`lstmlab train
--max-minutes`): it counts wall-clock time, evaluations included.

The regularisers (`--zoneout`, `--recurrent-dropout`, `--weight-dropout`,
`--layer-norm`; see `lstmlab.cells.regularisers`) default to the charlm task's; `--steps N`
stops after N steps instead of the budget (an ablation in steps does not depend on how
busy the machine is); `--threads` sets torch's threads.

Report (curves of several runs in one PNG, and a Markdown table on stdout):

    python benchmarks/charlm_shakespeare.py --report runs/charlm/lstm runs/charlm/gru --plot docs/charlm_curves.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from lstmlab.charlm.sampling import generate, model_step
from lstmlab.train import TrainConfig, Trainer

TARGET = 1.52  # nats per character on the validation text within 15 minutes


def train(args: argparse.Namespace) -> dict:
    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise SystemExit(f"charlm_shakespeare: corpus must be a text file; got {str(corpus)!r}")
    config = TrainConfig(
        task="charlm",
        task_options={"text": str(corpus.resolve()), "seq_len": args.seq_len, "batch_size": args.batch},
        cell=args.cell,
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
        forget_bias=args.forget_bias,
        lr=args.lr,
        clip=args.clip,
        backend=args.backend,
        device=args.device,
        lr_schedule=args.lr_schedule,
        warmup=args.warmup,
        zoneout=args.zoneout,
        recurrent_dropout=args.recurrent_dropout,
        weight_dropout=args.weight_dropout,
        layer_norm=args.layer_norm,
        steps=args.steps or 10**9,
        # the trainer stops after the step that spends the budget, then evaluates and saves
        max_minutes=None if args.steps else args.minutes,
        seed=args.seed,
        eval_every=args.eval_every,
        log_every=args.log_every,
        stop_when_solved=False,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(config, args.out)
    regularisers = trainer.config.regularisers()
    name = f"{args.cell} {regularisers}"
    print(f"{name}: {trainer.summary()['parameters']} parameters, backend {trainer.model.active_backend}", flush=True)
    for record in trainer.run():
        if record["kind"] == "eval":
            print(
                f"step {record['step']:6d}  {record['seconds'] / 60:6.2f} min  validation {record['loss']:.4f} nats", flush=True
            )
    evals = [json.loads(line) for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curve = [(r["seconds"] / 60, r["loss"]) for r in evals if r.get("kind") == "eval"]
    curve_steps = [r["step"] for r in evals if r.get("kind") == "eval"]
    start = time.perf_counter()
    vocab = trainer.task.vocabulary
    sample = "".join(generate(model_step(trainer.model), vocab, "\n", args.sample_length, 0.8, 0, args.seed))
    rate = args.sample_length / (time.perf_counter() - start)
    best = min(loss for _, loss in curve)
    result = {
        "cell": args.cell,
        "dropout": args.dropout,
        "regularisers": regularisers,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "seed": args.seed,
        "device": args.device,
        "active_backend": trainer.model.active_backend,
        "parameters": trainer.summary()["parameters"],
        "steps": trainer.step,
        "characters_seen": trainer.step * args.batch * args.seq_len,
        "minutes": round(trainer.seconds / 60, 2),
        "steps_per_second": round(trainer.step / trainer.seconds, 3),
        "final_loss": curve[-1][1],
        "best_loss": best,
        "final_bpc": curve[-1][1] / math.log(2),
        "curve_minutes": [round(m, 3) for m, _ in curve],
        "curve_loss": [round(v, 5) for _, v in curve],
        "curve_steps": curve_steps,
        "sample": sample,
        "sample_chars_per_second": round(rate),
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
    }
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"final validation loss {result['final_loss']:.4f} nats ({result['final_bpc']:.3f} bits) after {result['minutes']} min")
    print(sample)
    return result


def report(run_dirs: list[str], plot: str | None) -> None:
    results = [{**json.loads((Path(d) / "result.json").read_text()), "run": Path(d).name} for d in run_dirs]
    columns = (
        "run | cell | dropout | regularisers | backend | parameters | steps | steps/s | minutes | final validation loss | best"
    )
    print(f"| {columns} |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        regs = ", ".join(f"{k} {v}" for k, v in r.get("regularisers", {}).items()) or "none"
        rate = r.get("steps_per_second", r["steps"] / (60 * r["minutes"]))
        print(
            f"| {r['run']} | {r['cell']} | {r.get('dropout', '')} | {regs} | {r['active_backend']} | {r['parameters']:,} "
            f"| {r['steps']:,} | {rate:.2f} | {r['minutes']:.1f} | {r['final_loss']:.3f} | {r['best_loss']:.3f} |"
        )
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for r in results:
            ax.plot(r["curve_minutes"][1:], r["curve_loss"][1:], label=f"{r['run']} ({r['final_loss']:.3f})")
        ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {TARGET}")
        ax.set_xlabel("minutes of training (wall clock, evaluations included)")
        ax.set_ylabel("validation loss (nats per character)")
        ax.set_title("tiny-shakespeare, 2 x 256, batch 64, sequence 100")
        ax.set_ylim(1.3, 2.6)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot)
        print(f"wrote {plot}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", help="path of tinyshakespeare.txt (or any UTF-8 text)")
    parser.add_argument("--cell", default="lstm", help="lstm, gru, peephole, ... (default: lstm)")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget (default: 15)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/charlm/CELL)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.2, help="between layers (default: 0.2)")
    parser.add_argument("--forget-bias", type=float, default=None, help="initial forget-gate bias (default: the task's, 0)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--lr-schedule", default="constant", help="constant, cosine or step over --steps (default: constant)")
    parser.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up (default: 0)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--zoneout", type=float, default=None, help="(default: the task's)")
    parser.add_argument("--recurrent-dropout", type=float, default=None, help="(default: the task's)")
    parser.add_argument("--weight-dropout", type=float, default=None, help="(default: the task's)")
    parser.add_argument("--layer-norm", action=argparse.BooleanOptionalAction, default=None, help="(default: the task's)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps instead of --minutes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validations (default: 100)")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--sample-length", type=int, default=1000)
    parser.add_argument("--report", nargs="+", metavar="RUN_DIR", help="summarise finished runs instead of training")
    parser.add_argument("--plot", default=None, help="with --report: write the validation curves to this PNG")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.plot)
        return
    if args.corpus is None:
        parser.error("the corpus path is required to train")
    args.out = args.out or f"runs/charlm/{args.cell}"
    train(args)


if __name__ == "__main__":
    main()

"""The charlm regulariser ablation at equal steps: several settings x several seeds.

    python benchmarks/charlm_ablation.py data/tinyshakespeare.txt --steps 1170 --seeds 3 \\
        --parallel 2 --out runs/ablation --json-out runs/ablation/ablation.json --plot docs/charlm_ablation.png

Each (setting, seed) is one `benchmarks/charlm_shakespeare.py` run of a 2 x 256 LSTM
(batch 64, sequence 100, Adam at `--lr`, gradient norm clipped at 1) for `--steps` steps,
validated every `--eval-every` steps; `--parallel` runs go side by side (on a GPU that has
room for them, or one thread each on the CPU). Comparing at equal steps makes the result
independent of how busy the machine is; what a setting costs per step on the CPU is
measured apart (docs/charlm.md). Settings run seed by seed (every setting's first seed
first), and the JSON file is rewritten as each run ends, so a stopped ablation keeps what
it measured. The Markdown table of the final and best validation losses (mean, spread and
each seed, and Welch's t-test of each setting's final losses against `--baseline`'s) goes
to stdout; `--plot` draws the mean validation curve of each setting
against steps, with the range over seeds shaded.

`--report FILE.json` prints the table (and `--plot`s) of a finished ablation again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from lstmlab.experiments.papers.stats import welch

SCRIPT = Path(__file__).with_name("charlm_shakespeare.py")

# setting -> the flags of charlm_shakespeare.py that make it (besides the common ones)
SETTINGS: dict[str, list[str]] = {
    "none": ["--dropout", "0", "--no-layer-norm"],
    "dropout": ["--dropout", "0.2", "--no-layer-norm"],
    "dropout+recurrent-dropout": ["--dropout", "0.2", "--no-layer-norm", "--recurrent-dropout", "0.1"],
    "ln": ["--dropout", "0.2", "--layer-norm"],
    "ln+zoneout": ["--dropout", "0.2", "--layer-norm", "--zoneout", "0.1"],
    "ln+recurrent-dropout": ["--dropout", "0.2", "--layer-norm", "--recurrent-dropout", "0.1"],
    "ln+weight-dropout": ["--dropout", "0.2", "--layer-norm", "--weight-dropout", "0.2"],
    "ln+cosine": ["--dropout", "0.2", "--layer-norm", "--lr-schedule", "cosine"],
    "ln+cosine+lr5e-3": ["--dropout", "0.2", "--layer-norm", "--lr-schedule", "cosine", "--lr", "5e-3"],
}


def run_one(args: argparse.Namespace, setting: str, seed: int) -> dict:
    out = Path(args.out) / f"{setting}-s{seed}"
    command = [
        sys.executable, str(SCRIPT), args.corpus, "--out", str(out), "--steps", str(args.steps),
        "--seed", str(seed), "--lr", str(args.lr), "--device", args.device, "--eval-every", str(args.eval_every),
        "--sample-length", "50", *(["--threads", str(args.threads)] if args.threads else []), *SETTINGS[setting],
    ]  # fmt: skip
    # later flags win in argparse: a setting's own --lr overrides the common one
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"setting": setting, "seed": seed, "error": done.stderr[-2000:]}
    result = json.loads((out / "result.json").read_text())
    keep = ("final_loss", "best_loss", "steps", "steps_per_second", "active_backend", "lr", "lr_schedule", "regularisers")
    return {
        "setting": setting,
        "seed": seed,
        **{key: result[key] for key in keep},
        "curve_steps": result["curve_steps"],
        "curve_loss": result["curve_loss"],
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def summary(runs: list[dict], baseline: str = "ln") -> list[dict]:
    """One row per setting: final and best validation losses over its seeds, and Welch's
    t-test of its final losses against the `baseline` setting's (where both have 2+ seeds)."""
    rows = []
    base = [r["final_loss"] for r in runs if r["setting"] == baseline and "error" not in r]
    for setting in dict.fromkeys(run["setting"] for run in runs):
        done = sorted((r for r in runs if r["setting"] == setting and "error" not in r), key=lambda r: r["seed"])
        finals = [r["final_loss"] for r in done]
        rows.append(
            {
                "setting": setting,
                "seeds": len(done),
                "failed": sum(1 for r in runs if r["setting"] == setting and "error" in r),
                "final_mean": statistics.fmean(finals) if finals else None,
                "final_sd": statistics.stdev(finals) if len(finals) > 1 else None,
                "finals": finals,
                "best_mean": statistics.fmean(r["best_loss"] for r in done) if done else None,
                "against": baseline,
                "welch_p": welch(finals, base).p if setting != baseline and min(len(finals), len(base)) > 1 else None,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    against = rows[0]["against"] if rows else ""
    lines = [
        f"| setting | seeds | final loss, mean | sd | each seed | best loss, mean | Welch's p against {against} |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        if not row["seeds"]:
            lines.append(f"| {row['setting']} | 0 ({row['failed']} failed) | – | – | – | – | – |")
            continue
        sd = f"{row['final_sd']:.3f}" if row["final_sd"] is not None else "–"
        each = ", ".join(f"{v:.3f}" for v in row["finals"])
        p = f"{row['welch_p']:.2g}" if row["welch_p"] is not None else "–"
        mean, best = f"{row['final_mean']:.3f}", f"{row['best_mean']:.3f}"
        lines.append(f"| {row['setting']} | {row['seeds']} | {mean} | {sd} | {each} | {best} | {p} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for setting in dict.fromkeys(run["setting"] for run in runs):
        curves = [r for r in runs if r["setting"] == setting and "error" not in r]
        if not curves:
            continue
        length = min(len(r["curve_loss"]) for r in curves)
        steps = curves[0]["curve_steps"][1:length]
        columns = list(zip(*(r["curve_loss"][1:length] for r in curves)))
        mean = [statistics.fmean(c) for c in columns]
        (line,) = ax.plot(steps, mean, label=f"{setting} ({mean[-1]:.3f}, {len(curves)} seeds)")
        ax.fill_between(steps, [min(c) for c in columns], [max(c) for c in columns], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("training steps (batch 64 x 100 characters)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title(title)
    ax.set_ylim(1.35, 2.2)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"wrote {path}", file=sys.stderr)


def write(path: str | None, args: argparse.Namespace, runs: list[dict]) -> None:
    if path:
        settings = {key: value for key, value in vars(args).items() if key not in ("report", "plot", "json_out")}
        document = {"settings": settings, "summary": summary(runs, args.baseline), "runs": runs}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(document, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", help="path of tinyshakespeare.txt (or any UTF-8 text)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING",
                        help=f"which settings (default: all: {', '.join(SETTINGS)})")  # fmt: skip
    parser.add_argument("--steps", type=int, default=1170, help="steps per run (default: 1170, 15 minutes of the 2-core machine)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting (default: 3)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's rate, lstmlab train's default (default: 3e-3)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: 1 on the CPU)")
    parser.add_argument("--parallel", type=int, default=1, help="runs side by side (default: 1)")
    parser.add_argument("--out", default="runs/ablation", help="where the run directories go")
    parser.add_argument("--json-out", default=None, help="write the settings, summary and every run's curve here")
    parser.add_argument("--plot", default=None, help="write the mean validation curves to this PNG")
    parser.add_argument("--baseline", default="ln", choices=list(SETTINGS), help="the setting the others are tested against")
    parser.add_argument("--report", default=None, metavar="FILE.json", help="summarise a finished ablation instead")
    args = parser.parse_args()
    if args.report:
        document = json.loads(Path(args.report).read_text())
        runs = document["runs"]
        print(table(summary(runs, args.baseline)))
        if args.plot:
            plot(runs, args.plot, _title(document["settings"]))
        return
    if args.corpus is None:
        parser.error("the corpus path is required to train")
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    jobs = [(setting, seed) for seed in range(args.seeds) for setting in args.settings]
    runs: list[dict] = []
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(run_one, args, setting, seed) for setting, seed in jobs]
        for future in as_completed(futures):
            run = future.result()
            runs.append(run)
            runs.sort(key=lambda r: (args.settings.index(r["setting"]), r["seed"]))
            if "error" in run:
                status = run["error"].strip().splitlines()[-1]
            else:
                status = f"final {run['final_loss']:.4f}, best {run['best_loss']:.4f}"
            print(f"[{len(runs)}/{len(jobs)}] {run['setting']} seed {run['seed']}: {status}", file=sys.stderr, flush=True)
            write(args.json_out, args, runs)
    print(table(summary(runs, args.baseline)))
    if args.plot:
        plot(runs, args.plot, _title(vars(args)))


def _title(settings: dict) -> str:
    return f"tiny-shakespeare, 2 x 256 LSTM, {settings['steps']} steps, lr {settings['lr']:g}, {settings['device']}"


if __name__ == "__main__":
    main()

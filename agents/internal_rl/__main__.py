"""Run the internal-RL pipeline of arXiv 2512.20605 on a registered env.

    python -m agents.internal_rl --env HierGrid-v0 --preset quick
    python -m agents.internal_rl --env HierAnt-v0 --preset quick

Each env has its own smoke, quick and paper presets. Stages run in order; each reads its
inputs from and writes its outputs to the run directory --out (default
runs/<env>-<preset>-<seed>):

{stages}

Resume: re-running the same command (same --out, same config) skips the stages that
finished and calls the interrupted one again, which continues from its last checkpoint
(at most one checkpoint interval of work is lost; the data stage simply regenerates, in
seconds). A different config in an existing --out is refused: use another --out, or
delete the directory. --device is not part of the config's identity: a run may be
resumed on another device. To redo one stage, delete <out>/<stage>/ and re-run.

Outputs: <out>/config.json (every value, also printed at start), <out>/summary.json
(headline numbers, e.g. expert.success_rate), <out>/<stage>/metrics.jsonl (one JSON
object per line), <out>/plots/*.png, and each stage's files in <out>/<stage>/.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from agents.internal_rl.config import (
    DEVICES,
    PRESET_NAMES,
    SUPPORTED_ENVS,
    ConfigError,
    RunConfig,
)
from agents.internal_rl.pipeline import STAGES, run_pipeline
from agents.internal_rl.run_dir import RunDirError


def build_parser() -> argparse.ArgumentParser:
    stages = "\n".join(f"  {name:<12} {stage.description}" for name, stage in STAGES.items())
    parser = argparse.ArgumentParser(
        prog="python -m agents.internal_rl",
        description=__doc__.format(stages=stages),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--env",
        required=True,
        metavar="ID",
        help=f"registered env ID; supported: {', '.join(SUPPORTED_ENVS)}",
    )
    parser.add_argument(
        "--preset",
        default="quick",
        choices=list(PRESET_NAMES),
        help="smoke: tiny, under a minute on a CPU (tests); quick: the 2-core CPU budget; "
        "paper: the paper's hyperparameters, for a GPU (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, help="run directory (default: runs/<env>-<preset>-<seed>)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the whole run (default: %(default)s)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="auto: CUDA when available, else CPU (default: %(default)s)",
    )
    parser.add_argument(
        "--stage",
        choices=list(STAGES),
        help="run only this stage (its inputs must be finished); default: every stage in order",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STAGE.FIELD=VALUE",
        help="override one value of the preset, e.g. --set base.steps=500 (repeatable; "
        "VALUE is read as JSON, else as a string)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = args.out or Path("runs") / f"{args.env}-{args.preset}-{args.seed}"
    try:
        config = RunConfig.from_preset(
            args.env, args.preset, args.seed, args.device, args.overrides
        )
        print(f"config:\n{config.to_json()}")
        run = run_pipeline(config, out, args.stage)
    except (ConfigError, RunDirError) as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit(
            f"\ninterrupted: re-run the same command to resume in {out} (finished stages are "
            "kept; the interrupted one continues from its last checkpoint)."
        ) from None
    print(f"summary ({run.summary_path}):\n{json.dumps(run.summary(), indent=2)}")


if __name__ == "__main__":
    main()

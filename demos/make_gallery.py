"""Regenerate the README's GIF gallery and the docs' pictures, in ``docs/media/``.

    python demos/make_gallery.py --seed 0 --out docs/media     # about a minute (the ant)

GIFs: the grid expert, the ant expert and a team of two on the post-training task, each
one episode from ``--seed`` (seed 0: all three succeed). Pictures: the first frame of
each env after ``reset(seed=seed)``. GIFs are kept well under 2 MB: the ant's frames are
scaled to 320 pixels, one in two is kept, with a shared palette of 128 colours.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import record_expert
import record_multiagent

from hier_envs.multiagent import pinpad_v0

ANT_WIDTH = 320


def save_pictures(seed: int, out: Path) -> None:
    """A PNG of each env's first frame, at its own size: hiergrid.png, hierant.png and
    multiagent.png."""
    out.mkdir(parents=True, exist_ok=True)
    envs = {
        "hiergrid.png": gym.make("HierGrid-v0", render_mode="rgb_array"),
        "hierant.png": gym.make("HierAnt-v0", render_mode="rgb_array"),
        "multiagent.png": pinpad_v0.parallel_env(render_mode="rgb_array"),
    }
    for name, env in envs.items():
        env.reset(seed=seed)
        iio.imwrite(out / name, env.render())
        env.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Record the three GIFs and save the three pictures."""
    parser = argparse.ArgumentParser(description="Regenerate docs/media (GIFs and pictures).")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default: 0)")
    parser.add_argument(
        "--out", type=Path, default=Path("docs/media"), help="folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    common = ["--task", "post", "--episodes", "1", "--seed", str(args.seed)]
    record_expert.main(
        ["--env", "HierGrid-v0", *common, "--out", str(args.out / "hiergrid_post.gif")]
    )
    record_expert.main(
        ["--env", "HierAnt-v0", *common, "--out", str(args.out / "hierant_post.gif")]
        + ["--width", str(ANT_WIDTH), "--every", "2", "--colours", "128"]
    )
    record_multiagent.main([*common, "--out", str(args.out / "pinpad_team_post.gif")])
    save_pictures(args.seed, args.out)


if __name__ == "__main__":
    main()

"""The demo scripts record what they say (MP4 and GIF, every env), and the committed
gallery stays small."""

from __future__ import annotations

import importlib
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "docs" / "media"


@pytest.fixture
def demos(monkeypatch):
    """The demo scripts as modules (they import each other, as when run from demos/)."""
    monkeypatch.syspath_prepend(str(ROOT / "demos"))
    return {name: importlib.import_module(name) for name in ("record_expert", "record_multiagent")}


def _steps(output: str) -> list[int]:
    """Episode lengths reported by a demo script."""
    return [
        int(line.split(", ")[-1].split()[0]) for line in output.splitlines() if "episode" in line
    ]


def test_grid_expert_mp4_has_every_step_and_a_held_end(demos, tmp_path, capsys):
    out = tmp_path / "grid.mp4"
    demos["record_expert"].main(
        ["--env", "HierGrid-v0", "--task", "pretrain", "--seed", "3"]
        + ["--episodes", "2", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert printed.count(", success, ") == 2 and "2/2 successes" in printed
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == sum(steps + 1 + 8 for steps in _steps(printed))  # 8 fps: 1 s held


def test_grid_expert_gif_is_thinned_shrunk_and_uses_few_colours(demos, tmp_path, capsys):
    out = tmp_path / "grid.gif"
    demos["record_expert"].main(
        ["--env", "HierGrid-v0", "--seed", "0", "--episodes", "1", "--out", str(out)]
        + ["--width", "168", "--every", "2", "--colours", "16"]
    )
    video = iio.imread(out, index=None)
    assert video.shape[1:3] == (192, 176)  # 168x192 scaled frame, padded to 16-pixel blocks
    assert len(np.unique(video[..., :3].reshape(-1, 3), axis=0)) <= 16
    (steps,) = _steps(capsys.readouterr().out)
    assert len(video) <= steps // 2 + 2 + 4  # one frame in two, and a 1 s end at 4 fps


def test_ant_expert_records_post_and_pretraining_tasks(demos, tmp_path, capsys):
    for task in ("post", "pretrain"):
        out = tmp_path / f"ant_{task}.mp4"
        demos["record_expert"].main(
            ["--env", "HierAnt-v0", "--task", task, "--seed", "0", "--episodes", "1"]
            + ["--max-steps", "6", "--width", "96", "--out", str(out)]
        )
        printed = capsys.readouterr().out
        assert "time-out, 6 steps" in printed
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
        assert frames == 7 + 20  # reset + 6 steps, then 1 s at 20 fps
        assert iio.improps(out, plugin="FFMPEG").shape[1:3] == (96, 96)


def test_team_demo_records_a_successful_team(demos, tmp_path, capsys):
    out = tmp_path / "team.gif"
    demos["record_multiagent"].main(
        ["--agents", "3", "--task", "pretrain", "--seed", "1", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert "2/2 successes" in printed
    video = iio.imread(out, index=None)
    assert video.shape[1:3] == (384, 336)


@pytest.mark.parametrize(
    "argv", [["--every", "0"], ["--colours", "1"], ["--width", "8"], ["--episodes", "0"]]
)
def test_bad_video_options_are_refused(demos, argv, capsys):
    with pytest.raises(SystemExit):
        demos["record_expert"].main(argv)
    assert "must" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demos["record_multiagent"].main(argv)


@pytest.mark.parametrize("name", ["hiergrid_post.gif", "hierant_post.gif", "pinpad_team_post.gif"])
def test_gallery_gifs_are_committed_and_well_under_2_mb(name):
    path = MEDIA / name
    assert path.stat().st_size < 1_000_000
    assert len(iio.imread(path, index=None)) > 20  # an episode, not a still

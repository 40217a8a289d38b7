"""The README's first command: `studio render examples/story.yaml -o DIR` on a fresh data folder
renders the sample story (its own local Ray, the CPU engines on Serve); the same command again
reuses it, and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.render.assemble import inspect_film
from pipeline.render.spec import FilmSpec
from tests.render.conftest import EXAMPLES

pytestmark = [pytest.mark.ray, pytest.mark.own_cluster]


def test_studio_render_makes_the_sample_story(tmp_path: Path) -> None:
    out = tmp_path / "story"
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "var"), "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "cluster.cli", "render", str(EXAMPLES / "story.yaml")]
    result = subprocess.run(
        [*command, "-o", str(out)], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"film: {out / 'film.mp4'}" in result.stdout
    assert "render" in result.stderr, "a progress bar was drawn"
    spec = FilmSpec.from_file(EXAMPLES / "story.yaml")
    info = inspect_film(out / "film.mp4")
    assert (info.width, info.height) == spec.frame_size == (1280, 720)
    assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert info.faststart
    assert 30 < info.duration_s < 90
    assert abs(info.video_duration_s - info.audio_duration_s) < 0.1
    assert {"subtitles.srt", "subtitles.vtt", "thumbnail.jpg", "storyboard.png"} <= {
        p.name for p in out.iterdir()
    }

    again = subprocess.run(
        [*command, "-o", str(tmp_path / "again")], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing changed since the last render" in again.stdout
    assert "cached: voice, video, assemble" in again.stderr, "the bar says what was reused"
    assert (tmp_path / "again" / "film.mp4").read_bytes() == (out / "film.mp4").read_bytes()

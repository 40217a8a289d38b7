"""`studio plan story.txt -o film.yaml`: a spec file to review and edit before rendering."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cluster import cli
from cluster.settings import Settings
from pipeline.render.spec import FilmSpec
from tests.planning.conftest import STORIES


def studio(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "var"), "STUDIO_LLM_BASE_URL": ""}
    command = [sys.executable, "-m", "cluster.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)


def test_studio_plan_writes_a_spec_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "film.yaml"
    result = studio(tmp_path, "plan", str(STORIES / "balcony.txt"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "8 scene(s) planned (cpu)" in result.stdout
    spec = FilmSpec.from_file(out)
    assert [c.name for c in spec.characters] == ["Romeo", "Juliet", "Nurse"]


def test_studio_plan_refuses_a_binary_file(tmp_path: Path) -> None:
    image = Path(__file__).parents[2] / "examples" / "assets" / "astronaut.png"
    result = studio(tmp_path, "plan", str(image), "-o", str(tmp_path / "x.yaml"))
    assert result.returncode == 1
    assert "binary, not text" in result.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_studio_render_plans_a_story_first_and_keeps_the_plan(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", _env_file=None)
    out = tmp_path / "out"
    spec = cli._read_or_plan(settings, STORIES / "three_bears.txt", out)
    assert FilmSpec.from_file(out / "film.yaml") == spec
    assert len(spec.characters) == 3
    example = Path(__file__).parents[2] / "examples" / "story.yaml"
    assert cli._read_or_plan(settings, example, out) == FilmSpec.from_file(example)

"""Batch renders from a JSONL manifest with Ray Data, on the session's Ray with the CPU engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.batch import main, run_batch
from cluster.settings import Settings
from pipeline.render.assemble import inspect_film
from tests.render.conftest import example

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]


def write_manifest(path: Path, entries: list[dict[str, Any] | str]) -> Path:
    lines = [entry if isinstance(entry, str) else json.dumps(entry) for entry in entries]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_batch_renders_the_good_specs_and_reports_the_bad_one(
    settings: Settings, tmp_path: Path
) -> None:
    short = example("short", resolution=144)
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(short.model_dump(mode="json")))
    one_scene = example("short", resolution=144, scenes=[short.scenes[0].model_dump()])
    bad = short.model_dump(mode="json") | {"fps": 5}
    manifest = write_manifest(
        tmp_path / "manifest.jsonl",
        [
            {"spec": "short.yaml", "output": "films/short"},
            {"spec": one_scene.model_dump(mode="json"), "output": "films/one", "id": "one"},
            {"spec": bad, "output": "films/bad", "id": "bad"},
        ],
    )

    results = run_batch(settings, manifest, tmp_path / "results.jsonl")

    written = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(written, key=lambda r: r["line"]) == results
    assert [(r["id"], r["status"]) for r in results] == [
        ("short", "ok"),
        ("one", "ok"),
        ("bad", "error"),
    ]
    for result, name, frames in zip(results[:2], ("short", "one"), (360, 120), strict=True):
        assert Path(result["output"]) == (tmp_path / "films" / name).resolve()
        assert result["frame_count"] == frames
        assert result["duration_s"] == pytest.approx(frames / 24)
        film = inspect_film(Path(result["output"]) / "film.mp4")
        assert (film.frame_count, film.width, film.height) == (frames, 144, 256)
        assert (Path(result["output"]) / "subtitles.srt").read_text()
    assert "fps" in results[2]["error"] and "greater than or equal to 12" in results[2]["error"]
    assert not (tmp_path / "films" / "bad").exists()


def test_each_kind_of_bad_entry_is_reported_and_the_exit_code_stays_zero(tmp_path: Path) -> None:
    spec = example("short", resolution=144).model_dump(mode="json")
    scenes = [spec["scenes"][0] | {"image": "missing.png"}]
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    (tmp_path / "invalid.json").write_text(json.dumps(spec | {"scenes": []}))
    manifest = write_manifest(
        tmp_path / "manifest.jsonl",
        [
            "{not json",
            {"spec": "broken.yaml", "output": "a"},
            {"spec": "invalid.json", "output": "b"},
            {"spec": spec | {"scenes": scenes}, "output": "c", "id": "missing-image"},
            {"spec": "absent.yaml", "output": "d"},
            {"spec": "broken.yaml", "output": "a"},
        ],
    )

    assert main([str(manifest), "-o", str(tmp_path / "results.jsonl")]) == 0

    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    errors = {r["line"]: r["error"] for r in map(json.loads, lines)}
    assert all(r["status"] == "error" for r in map(json.loads, lines))
    assert errors[1].startswith("not an entry: invalid JSON")
    assert "not valid YAML" in errors[2]
    assert "scenes: List should have at least 1 item" in errors[3]
    assert "scenes.0.image: missing.png not found" in errors[4]
    assert errors[5] == f"file not found: {(tmp_path / 'absent.yaml').resolve()}"
    assert "also line 2's" in errors[6]


def test_an_unreadable_manifest_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere.jsonl"), "-o", str(tmp_path / "r.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()

"""A batch manifest is read before anything is submitted: each bad line is rejected with its
reason, the good ones kept (batches on a running studio: tests/ops/test_studio_serve.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cluster.batch import read_manifest
from tests.render.conftest import example, write_manifest


def test_a_bad_line_of_each_kind_is_rejected_before_anything_is_submitted(tmp_path: Path) -> None:
    spec = example("short", resolution=144).model_dump(mode="json")
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    (tmp_path / "invalid.json").write_text(json.dumps(spec | {"scenes": []}))
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(spec))
    manifest = write_manifest(
        tmp_path / "manifest.jsonl",
        [
            "{not json",
            {"spec": "broken.yaml"},
            {"spec": "invalid.json"},
            {"spec": "absent.yaml"},
            {"spec": spec | {"fps": 5}, "id": "slow"},
            {"spec": "good.yaml", "output": "films/good"},
            {"spec": "good.yaml", "quality": "best"},
            {"spec": "good.yaml", "quality": "animatic", "title": "Good"},
        ],
    )

    rows, rejected = read_manifest(manifest)

    errors = {r.line: r.error or "" for r in rejected}
    assert [(row.line, row.id, row.title, row.quality) for row in rows] == [
        (8, "good", "Good", "animatic")
    ]
    assert all(r.status == "rejected" for r in rejected)
    assert errors[1].startswith("not an entry: invalid JSON")
    assert "not valid YAML" in errors[2]
    assert "scenes: List should have at least 1 item" in errors[3]
    assert errors[4] == "file not found: absent.yaml"
    assert "fps" in errors[5] and "greater than or equal to 12" in errors[5]
    assert "output: Extra inputs are not permitted" in errors[6]
    assert "quality" in errors[7]
    assert str(tmp_path) not in " ".join(errors.values())

"""Item 1 of issue 24: a film spec may name only the user's own uploaded images through the API;
file paths are for specs read from files (the CLI), resolved under the spec's folder, never
through a symbolic link. (The render's own refusal, and job errors without server paths, are in
tests/jobs/test_jobs.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.errors import SpecInvalid
from pipeline.render.spec import ImageRef
from tests.api.conftest import Account, assert_problem, film_spec

pytestmark = pytest.mark.ray

PROBES = [
    "examples/assets/astronaut.png",  # a file of the server's working tree
    "README.md",
    "no/such/file.png",
    "var/secrets/jwt.key",
    "var/storage/uploads/x.png",
    {"path": "examples/assets/astronaut.png"},
]
PLACES = ["image", "character", "reference"]


def spec_naming(place: str, image: Any) -> dict[str, Any]:
    scene = {"narration": "The sun rises.", "prompt": "a hill at dawn"}
    if place == "reference":
        return film_spec(
            characters=[{"name": "Ann", "reference": image}], scenes=[scene | {"speaker": "Ann"}]
        )
    return film_spec(scenes=[scene | {place: image}])


@pytest.mark.parametrize("place", PLACES)
def test_a_spec_naming_server_files_is_refused_on_create_and_update(
    client: httpx.Client, account: Account, project: str, place: str
) -> None:
    for image in PROBES:
        spec = spec_naming(place, image)
        created = client.post(
            "/api/projects/create", headers=account.auth, json={"title": "x", "spec": spec}
        )
        assert_problem(created, 422, "spec-invalid")
        assert "file paths are not accepted" in created.json()["detail"]
        updated = client.patch(
            f"/api/projects/{project}", headers=account.auth, json={"spec": spec}
        )
        assert_problem(updated, 422, "spec-invalid")


def test_a_path_resolves_under_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "face.png").write_bytes(b"x")
    assert ImageRef(path="art/face.png").resolve(tmp_path) == tmp_path.resolve() / "art/face.png"


def test_a_path_without_a_spec_folder_is_refused() -> None:
    with pytest.raises(SpecInvalid, match="only uploaded assets"):
        ImageRef(path="examples/assets/astronaut.png").resolve(None)


@pytest.mark.parametrize("link", ["face.png", "art"])
def test_a_symbolic_link_is_not_followed(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    (outside / "art").mkdir(parents=True)
    (outside / "face.png").write_bytes(b"secret")
    (outside / "art" / "face.png").write_bytes(b"secret")
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / link).symlink_to(outside / link)
    path = "face.png" if link == "face.png" else "art/face.png"
    with pytest.raises(SpecInvalid, match="symbolic links") as refused:
        ImageRef(path=path).resolve(spec_dir)
    assert str(tmp_path) not in refused.value.detail


@pytest.mark.parametrize("path", ["/etc/passwd", "../secret.png", "a/../../b.png", "a\\b.png"])
def test_a_path_out_of_the_folder_is_refused_when_read(path: str) -> None:
    with pytest.raises(ValueError, match="inside the spec's folder"):
        ImageRef(path=path)

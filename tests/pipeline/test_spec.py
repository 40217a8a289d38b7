"""The film spec: the examples load, bad specs are refused with the field named, hashes are
stable cache keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from models.base import AgeBand, Gender, MusicStyle
from pipeline.errors import SpecInvalid
from pipeline.render.spec import FilmSpec, ImageRef, Transition

EXAMPLES = Path(__file__).parents[2] / "examples"


def minimal(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "title": "Test film",
        "scenes": [{"narration": "Hello there.", "prompt": "a hill at dawn"}],
    }
    spec.update(changes)
    return spec


def podcast_scene(podcast: dict[str, Any] | None = None, **scene: Any) -> dict[str, Any]:
    """A podcast scene of one speaker, Al, over black; `podcast` changes the podcast."""
    fields = {
        "speakers": ["Al"],
        "lines": [{"speaker": "Al", "text": "Hi."}],
        "background": "#000000",
    }
    return {"podcast": fields | (podcast or {}), **scene}


def problems_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        FilmSpec.from_text(json.dumps(spec), "json")
    return caught.value.extra["problems"]


@pytest.mark.parametrize("name", ["story", "short", "sloka", "podcast"])
def test_examples_load(name: str) -> None:
    spec = FilmSpec.from_file(EXAMPLES / f"{name}.yaml")
    assert spec.spec_version == 1
    for scene in spec.scenes:
        for image in (scene.image, scene.character):
            if image is not None:
                assert image.resolve(EXAMPLES).is_file()
    for sheet in spec.characters:
        assert sheet.reference is None or sheet.reference.resolve(EXAMPLES).is_file()


def test_story_example_has_two_voices_a_talking_character_and_a_score() -> None:
    spec = FilmSpec.from_file(EXAMPLES / "story.yaml")
    assert len(spec.scenes) == 6
    voices = {(scene.voice.gender, scene.voice.age) for scene in spec.scenes}
    assert voices == {(Gender.female, AgeBand.adult), (Gender.male, AgeBand.elder)}
    assert [scene.character.path for scene in spec.scenes if scene.character] == [
        "assets/astronaut.png"
    ]
    assert len({scene.camera for scene in spec.scenes}) >= 5
    assert set(Transition) <= {scene.transition for scene in spec.scenes}
    assert spec.music.style is MusicStyle.score


def test_short_example_is_vertical_and_about_fifteen_seconds() -> None:
    spec = FilmSpec.from_file(EXAMPLES / "short.yaml")
    assert spec.frame_size == (720, 1280)
    assert sum(scene.duration_s or 0 for scene in spec.scenes) == pytest.approx(15)


def test_sloka_example_is_recited_by_an_elder_over_a_slow_drone() -> None:
    spec = FilmSpec.from_file(EXAMPLES / "sloka.yaml")
    assert {scene.voice.age for scene in spec.scenes} == {AgeBand.elder}
    assert spec.music.style is MusicStyle.sloka
    assert spec.music.tempo_bpm <= 60


@pytest.mark.parametrize(
    ("aspect_ratio", "resolution", "size"),
    [
        ("16:9", 720, (1280, 720)),
        ("9:16", 720, (720, 1280)),
        ("1:1", 720, (720, 720)),
        ("16:9", 1080, (1920, 1080)),
        ("16:9", 480, (854, 480)),
        ("9:16", 360, (360, 640)),
    ],
)
def test_frame_size_has_the_resolution_as_short_side_and_even_sides(
    aspect_ratio: str, resolution: int, size: tuple[int, int]
) -> None:
    spec = FilmSpec.model_validate(minimal(aspect_ratio=aspect_ratio, resolution=resolution))
    assert spec.frame_size == size


def test_yaml_and_json_give_the_same_spec_and_hash() -> None:
    from_yaml = FilmSpec.from_file(EXAMPLES / "story.yaml")
    from_json = FilmSpec.from_text(from_yaml.model_dump_json(), "json")
    assert from_json == from_yaml
    assert from_json.content_hash() == from_yaml.content_hash()


def test_editing_a_scene_changes_its_hash_and_the_films_only() -> None:
    spec = FilmSpec.from_file(EXAMPLES / "story.yaml")
    data = spec.model_dump(mode="json")
    data["scenes"][2]["narration"] = "A different line."
    edited = FilmSpec.model_validate(data)
    changed = [
        before.content_hash() != after.content_hash()
        for before, after in zip(spec.scenes, edited.scenes, strict=True)
    ]
    assert changed == [False, False, True, False, False, False]
    assert edited.content_hash() != spec.content_hash()
    assert len(spec.content_hash()) == 64


def test_sloka_example_is_in_devanagari_with_its_transliteration() -> None:
    spec = FilmSpec.from_file(EXAMPLES / "sloka.yaml")
    sanskrit = [scene for scene in spec.scenes if scene.voice.language == "sa"]
    assert sanskrit and all(scene.transliteration for scene in sanskrit)
    assert all("\u0900" <= scene.narration[0] <= "\u097f" for scene in sanskrit if scene.narration)


@pytest.mark.parametrize(
    ("scene", "problem"),
    [
        ({"narration": "सह नौ। भुनक्तु।", "transliteration": "saha nau bhunaktu."}, "1 sentences"),
        ({"duration_s": 2, "transliteration": "saha."}, "narration 0"),
    ],
)
def test_a_transliteration_needs_a_sentence_for_each_narration_sentence(
    scene: dict[str, Any], problem: str
) -> None:
    spec = minimal(scenes=[{"prompt": "a lamp", **scene}])
    assert any(p.startswith("scenes.0: ") and problem in p for p in problems_of(spec))


def test_a_scene_without_transliteration_hashes_as_before_it_was_added() -> None:
    scene = FilmSpec.model_validate(minimal()).scenes[0]
    # added within version 1, unset
    unused = ("transliteration", "speaker", "cast", "podcast", "driving_video")
    data = {k: v for k, v in scene.model_dump(mode="json").items() if k not in unused}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert scene.content_hash() == hashlib.sha256(canonical.encode()).hexdigest()
    written = scene.model_copy(update={"transliteration": "hello there."})
    assert written.content_hash() != scene.content_hash()


def test_json_schema_describes_the_versioned_spec() -> None:
    schema = FilmSpec.json_schema()
    assert schema["properties"]["spec_version"]["const"] == 1
    assert {"scenes", "music", "resolution", "aspect_ratio"} <= set(schema["properties"])
    assert "Scene" in schema["$defs"]


def test_an_image_may_be_a_stored_asset_or_a_relative_path() -> None:
    asset = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert ImageRef.model_validate(asset).asset_id == UUID(asset)
    assert ImageRef.model_validate("assets/a.png").path == "assets/a.png"
    assert ImageRef.model_validate({"asset_id": asset}).path is None


def many_words(count: int) -> str:
    return " ".join(["word"] * count) + "."


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        (minimal(scenes=[{"prompt": "a hill"}]), "scenes.0", "narration or duration_s"),
        (minimal(scenes=[]), "scenes", "at least 1"),
        (minimal(resolution=2160), "resolution", "above the 1080p maximum"),
        (
            minimal(scenes=[{"narration": many_words(401), "prompt": "a hill"}]),
            "scenes.0.narration",
            "401 words",
        ),
        (
            minimal(scenes=[{"narration": "a" * 4001, "prompt": "a hill"}]),
            "scenes.0.narration",
            "at most 4000 characters",
        ),
        (minimal(fps="24"), "fps", "a number is expected, not a string"),
        (minimal(captions=1), "captions", "a boolean is expected"),
        (minimal(title="t\x00x"), "title", "NUL characters"),
        (
            minimal(scenes=[{"narration": many_words(390), "prompt": "p"}] * 8),
            "spec",
            "at most 3000",
        ),
        (minimal(language="English"), "language", "'English' is not a code"),
        (
            minimal(
                scenes=[
                    {"narration": "Hi.", "prompt": "p", "voice": {"language": "Klingon"}},
                ]
            ),
            "scenes.0.voice.language",
            "pattern",
        ),
        (minimal(scenes=[{"narration": "Hi."}]), "scenes.0", "a visual prompt or an image"),
        (
            minimal(scenes=[{"duration_s": 3, "prompt": "p", "character": "a.png"}]),
            "scenes.0",
            "needs narration to lip-sync",
        ),
        (
            minimal(scenes=[{"narration": "Hi.", "prompt": "p", "driving_video": "nod.mp4"}]),
            "scenes.0",
            "a driving video moves a talking character",
        ),
        (
            minimal(
                scenes=[
                    {
                        "narration": "Hi.",
                        "prompt": "p",
                        "character": "a.png",
                        "driving_video": "../nod.mp4",
                    }
                ]
            ),
            "scenes.0.driving_video.path",
            "video path '../nod.mp4' must be relative",
        ),
        (
            minimal(scenes=[{"duration_s": 90, "prompt": "p"}]),
            "scenes.0.duration_s",
            "less than or equal to 60",
        ),
        (
            minimal(scenes=[{"duration_s": 3, "image": "/etc/passwd"}]),
            "scenes.0.image.path",
            "must be relative",
        ),
        (minimal(aspect_ratio="4:3"), "aspect_ratio", "'16:9', '9:16' or '1:1'"),
        (minimal(fps=120), "fps", "less than or equal to 60"),
        (minimal(music={"tempo_bpm": 300}), "music.tempo_bpm", "less than or equal to 200"),
        (minimal(music={"volume": 1.5}), "music.volume", "less than or equal to 1"),
        (minimal(spec_version=2), "spec_version", "1"),
        (minimal(colour="blue"), "colour", "Extra inputs are not permitted"),
        (
            minimal(scenes=[podcast_scene({"lines": [{"speaker": "Bo", "text": "Hi."}]})]),
            "scenes.0.podcast",
            "'Bo' is not one of the speakers",
        ),
        (
            minimal(scenes=[podcast_scene(narration="Hi.")]),
            "scenes.0",
            "it has no narration",
        ),
        (
            minimal(scenes=[podcast_scene({"background": "blue"})]),
            "scenes.0.podcast.background",
            "pattern",
        ),
        (
            minimal(characters=[{"name": "Al"}], scenes=[podcast_scene()]),
            "spec",
            "'Al' needs a character sheet with a reference portrait",
        ),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(
    spec: dict[str, Any], field: str, says: str
) -> None:
    problems = problems_of(spec)
    assert any(line.startswith(f"{field}: ") and says in line for line in problems), problems


def test_unreadable_text_and_unknown_file_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecInvalid, match="not valid YAML"):
        FilmSpec.from_text("title: [unclosed", "yaml")
    with pytest.raises(SpecInvalid, match="object of fields"):
        FilmSpec.from_text("- a list", "yaml")
    path = tmp_path / "film.txt"
    path.write_text("title: x")
    with pytest.raises(SpecInvalid, match=r"\.json, \.yaml or \.yml"):
        FilmSpec.from_file(path)

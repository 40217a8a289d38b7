"""The film spec: a versioned, validated description of a film, read from JSON or YAML.

A spec says what to make, never how: engines, caching and pricing read it but add nothing to it,
so `content_hash()` of a scene or of the film is a stable cache key for everything it drives.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal, Self
from uuid import UUID

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from models.base import CameraMove, Mood, MusicStyle, Voice
from pipeline.errors import SpecInvalid
from pipeline.fields import Line, Name, Paragraph, Passage, StrictInput
from pipeline.render.narration import split_sentences

MAX_SCENE_WORDS = 400
MAX_SCENE_CHARS = 4000
MAX_FILM_WORDS = 3000
MAX_RESOLUTION = 1080
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$"

AspectRatio = Literal["16:9", "9:16", "1:1"]
SpecFormat = Literal["json", "yaml"]

_ASPECTS: dict[str, tuple[int, int]] = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}

ADDED_FIELDS = (
    "characters", "speaker", "cast", "transliteration", "logline", "podcast", "driving_video"
)  # fmt: skip
"""Optional fields added within spec_version 1: a spec without them reads, and hashes, as before."""


class Transition(StrEnum):
    """How a scene hands over to the next one."""

    cut = "cut"
    crossfade = "crossfade"
    fade = "fade"


class _SpecModel(StrictInput):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys, no spaces, defaults included).

        Fields added to the spec after its first release (`ADDED_FIELDS`) enter the hash only when
        set, so a spec that does not use them keeps the hash, and the cached stages, it had.
        """
        data = _without_unused(self.model_dump(mode="json"))
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


class FileRef(_SpecModel):
    """A file: an uploaded asset, or (for CLI use) a path relative to the spec's folder.

    A bare string is accepted: a UUID becomes `asset_id`, anything else `path`.
    """

    kind: ClassVar[str] = "file"

    asset_id: UUID | None = None
    path: Line | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return {"asset_id": UUID(value)}
        except ValueError:
            return {"path": value}

    @field_validator("path")
    @classmethod
    def _relative_inside(cls, path: str | None) -> str | None:
        if path is None:
            return None
        pure = PurePosixPath(path)
        if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
            raise ValueError(f"{cls.kind} path {path!r} must be relative, inside the spec's folder")
        return path

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.asset_id is None) == (self.path is None):
            raise ValueError(f"a {self.kind} reference needs exactly one of asset_id or path")
        return self

    def resolve(self, base_dir: Path | None) -> Path:
        """The local file of a path reference, under `base_dir` (the spec's folder). Paths are
        for specs read from files (the CLI): without a folder, or through a symbolic link, or
        leading out of the folder, the reference is refused, naming only the spec's own text."""
        if self.path is None:
            raise ValueError(f"asset {self.asset_id} is stored, not a local file")
        if base_dir is None:
            raise SpecInvalid(f"{self.kind} {self.path!r}: only uploaded assets can be used here")
        base = base_dir.resolve()
        path = base
        for part in PurePosixPath(self.path).parts:
            path = path / part
            if path.is_symlink():
                raise SpecInvalid(f"{self.kind} {self.path!r}: symbolic links are not followed")
        if not path.resolve().is_relative_to(base):
            raise SpecInvalid(f"{self.kind} {self.path!r} is outside the spec's folder")
        return path


class ImageRef(FileRef):
    kind: ClassVar[str] = "image"


class VideoRef(FileRef):
    kind: ClassVar[str] = "video"


class Character(_SpecModel):
    """A character sheet: who appears across the film, in the same voice and the same look.

    Every scene that names the character (`speaker` or `cast`) speaks with `voice`, and its shot
    starts from `reference` (when the scene has no image of its own) and uses `seed` in the image
    and video engines.
    """

    name: Name = Field(max_length=60)
    description: Paragraph | None = Field(
        default=None, max_length=500, description="Looks and role."
    )
    voice: Voice = Field(default_factory=Voice)
    reference: ImageRef | None = Field(default=None, description="Reference image of the look.")
    seed: int = Field(default=0, ge=0, lt=2**32, description="Seed of every shot it appears in.")


class DialogueLine(_SpecModel):
    """One turn of a podcast: what a speaker says, in the voice of their character sheet."""

    speaker: Name
    text: Passage = Field(min_length=1, max_length=MAX_SCENE_CHARS)


class PodcastLayout(StrEnum):
    """Where the speakers sit: in tiles side by side over the background, or as small insets in
    its top corners (picture in picture)."""

    side_by_side = "side_by_side"
    picture_in_picture = "picture_in_picture"


class Podcast(_SpecModel):
    """A podcast scene: one or two speakers (character sheets with a `reference` portrait), each
    a talking head with a name lower-third, over the scene's shot or a plain colour; the dialogue
    lines, spoken one after another, say who speaks when, and the speaker of the line being
    spoken is highlighted."""

    speakers: list[Name] = Field(min_length=1, max_length=2)
    lines: list[DialogueLine] = Field(min_length=1, max_length=60)
    layout: PodcastLayout = PodcastLayout.side_by_side
    background: str | None = Field(
        default=None,
        max_length=7,
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="A colour (#rrggbb) behind the speakers; null shows the scene's shot (its "
        "prompt's video, or its image).",
    )

    @model_validator(mode="after")
    def _lines_by_speakers(self) -> Self:
        if len(set(self.speakers)) < len(self.speakers):
            raise ValueError("the podcast names a speaker twice")
        for number, line in enumerate(self.lines):
            if line.speaker not in self.speakers:
                raise ValueError(f"lines.{number}: {line.speaker!r} is not one of the speakers")
        return self

    @property
    def text(self) -> str:
        """The lines' words, one line after another."""
        return "\n\n".join(line.text for line in self.lines)


class Scene(_SpecModel):
    narration: Passage | None = Field(
        default=None,
        max_length=MAX_SCENE_CHARS,
        description=f"Spoken text, at most {MAX_SCENE_WORDS} words.",
    )
    transliteration: Passage | None = Field(
        default=None,
        max_length=MAX_SCENE_CHARS,
        description="The narration in another script (IAST under a Devanagari sloka): each of "
        "its sentences is a second caption line under the narration's sentence of that number.",
    )
    voice: Voice = Field(default_factory=Voice)
    prompt: Paragraph | None = Field(default=None, description="What the shot shows.")
    image: ImageRef | None = Field(default=None, description="Keyframe the shot starts from.")
    character: ImageRef | None = Field(
        default=None, description="On-screen speaking character; lip-synced to the narration."
    )
    driving_video: VideoRef | None = Field(
        default=None,
        description="A video of a face whose head motion moves the talking `character`: the "
        "scene takes a character animation engine (FOMM) instead of lip-sync.",
    )
    camera: CameraMove = CameraMove.static
    transition: Transition = Field(
        default=Transition.cut,
        description="Into the next scene; on the last scene, `cut` ends hard, others fade out.",
    )
    duration_s: float | None = Field(
        default=None, ge=0.5, le=60, description="Seconds; null fits the scene to its narration."
    )
    mood: Mood = Mood.calm
    title: Line | None = Field(default=None, max_length=120, description="Title card text.")
    caption: Line | None = Field(default=None, max_length=240, description="Card caption text.")
    speaker: Name | None = Field(
        default=None, description="The character sheet whose voice speaks the narration."
    )
    cast: list[Name] = Field(
        default_factory=list, max_length=12, description="Character sheets seen in the shot."
    )
    podcast: Podcast | None = Field(
        default=None, description="Speakers and their dialogue over the shot, instead of narration."
    )

    @field_validator("narration")
    @classmethod
    def _narration_words(cls, text: str | None) -> str | None:
        if not text:
            return None
        words = len(text.split())
        if words > MAX_SCENE_WORDS:
            raise ValueError(
                f"narration has {words} words; a scene allows at most {MAX_SCENE_WORDS}"
            )
        return text

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.podcast is not None:
            return self._podcast_complete(self.podcast)
        if self.narration is None and self.duration_s is None:
            raise ValueError(
                "a scene needs narration or duration_s (duration_s: null fits it to narration)"
            )
        if self.prompt is None and self.image is None:
            raise ValueError("a scene needs a visual prompt or an image")
        if self.character is not None and self.narration is None:
            raise ValueError("a talking character needs narration to lip-sync to")
        if self.driving_video is not None and self.character is None:
            raise ValueError("a driving video moves a talking character: the scene has none")
        if self.transliteration is not None:
            spoken = len(split_sentences(self.narration or ""))
            written = len(split_sentences(self.transliteration))
            if written != spoken:
                raise ValueError(
                    f"the transliteration has {written} sentences and the narration {spoken}: "
                    "each narration sentence needs one"
                )
        return self

    def _podcast_complete(self, podcast: Podcast) -> Self:
        spoken = ("narration", "transliteration", "character", "speaker", "driving_video")
        if present := [name for name in spoken if getattr(self, name) is not None]:
            raise ValueError(f"a podcast scene speaks its lines; it has no {', '.join(present)}")
        if podcast.background is None and self.prompt is None and self.image is None:
            raise ValueError("a podcast scene needs a background colour, a prompt or an image")
        words = len(podcast.text.split())
        if words > MAX_SCENE_WORDS:
            raise ValueError(
                f"the podcast's lines have {words} words; a scene allows at most {MAX_SCENE_WORDS}"
            )
        return self

    @property
    def spoken_text(self) -> str | None:
        """What the scene says: its narration, or its podcast's lines."""
        return self.podcast.text if self.podcast is not None else self.narration

    @property
    def word_count(self) -> int:
        return len(self.spoken_text.split()) if self.spoken_text else 0

    @property
    def characters(self) -> list[str]:
        """The character sheets the scene names: its speaker first, then its cast."""
        names = [self.speaker] if self.speaker else []
        return names + [name for name in self.cast if name not in names]


class Music(_SpecModel):
    mood: Mood = Mood.calm
    tempo_bpm: int = Field(default=90, ge=40, le=200)
    style: MusicStyle = MusicStyle.score
    volume: float = Field(default=0.35, ge=0, le=1, description="Linear gain of the music bed.")


class FilmSpec(_SpecModel):
    spec_version: Literal[1] = 1
    title: Line = Field(min_length=1, max_length=200)
    logline: Line | None = Field(
        default=None,
        max_length=255,
        description="What the film is about, in a sentence: with a neural image engine, the "
        "thumbnail is drawn from it and the title.",
    )
    language: Name = Field(default="en", description="BCP-47 style: en, hi, sa, en-gb.")
    aspect_ratio: AspectRatio = "16:9"
    resolution: int = Field(default=720, description="The short side in pixels (1080 at most).")
    fps: int = Field(default=24, ge=12, le=60)
    seed: int = Field(default=0, ge=0, lt=2**32)
    captions: bool = Field(default=True, description="Burn the narration into the picture.")
    music: Music = Field(default_factory=Music)
    characters: list[Character] = Field(default_factory=list, max_length=24)
    scenes: list[Scene] = Field(min_length=1, max_length=60)

    @model_validator(mode="before")
    @classmethod
    def _speaker_voices(cls, data: Any) -> Any:
        """A scene with a speaker and no voice of its own speaks with the character's voice."""
        if not isinstance(data, dict) or not isinstance(data.get("characters"), list):
            return data
        voices = {
            sheet.get("name"): sheet.get("voice", {})
            for sheet in data["characters"]
            if isinstance(sheet, dict)
        }
        scenes = data.get("scenes")
        if not isinstance(scenes, list):
            return data
        filled = [
            {**scene, "voice": voices[scene["speaker"]]}
            if isinstance(scene, dict) and "voice" not in scene and scene.get("speaker") in voices
            else scene
            for scene in scenes
        ]
        return {**data, "scenes": filled}

    @field_validator("language")
    @classmethod
    def _language_code(cls, code: str) -> str:
        if not re.fullmatch(LANGUAGE_PATTERN, code):
            raise ValueError(f"language {code!r} is not a code such as 'en', 'sa' or 'en-gb'")
        return code

    @field_validator("resolution")
    @classmethod
    def _resolution_range(cls, short_side: int) -> int:
        if short_side > MAX_RESOLUTION:
            raise ValueError(f"resolution {short_side} is above the {MAX_RESOLUTION}p maximum")
        if short_side < 144:
            raise ValueError(f"resolution {short_side} is below the 144p minimum")
        return short_side

    @model_validator(mode="after")
    def _film_words(self) -> Self:
        words = sum(scene.word_count for scene in self.scenes)
        if words > MAX_FILM_WORDS:
            raise ValueError(
                f"the film's narration has {words} words; a film allows at most {MAX_FILM_WORDS}"
            )
        return self

    @model_validator(mode="after")
    def _known_characters(self) -> Self:
        sheets = {sheet.name: sheet for sheet in self.characters}
        if len(sheets) < len(self.characters):
            raise ValueError("two character sheets have the same name")
        for number, scene in enumerate(self.scenes):
            for name in scene.characters:
                if name not in sheets:
                    raise ValueError(f"scenes.{number}: no character sheet named {name!r}")
            if scene.speaker is not None and scene.voice != sheets[scene.speaker].voice:
                raise ValueError(
                    f"scenes.{number}: the voice differs from {scene.speaker!r}'s character sheet"
                )
            for name in scene.podcast.speakers if scene.podcast else ():
                if name not in sheets or sheets[name].reference is None:
                    raise ValueError(
                        f"scenes.{number}.podcast: {name!r} needs a character sheet with a "
                        "reference portrait"
                    )
        return self

    def character(self, name: str) -> Character:
        """The character sheet of that name."""
        return next(sheet for sheet in self.characters if sheet.name == name)

    def scene_character(self, index: int) -> Character | None:
        """The character whose look a scene's shot follows: its speaker, else its first cast."""
        names = self.scenes[index].characters
        return self.character(names[0]) if names else None

    def scene_seed(self, index: int) -> int:
        """The seed of a scene's image and video: its character's, else the film's plus index."""
        sheet = self.scene_character(index)
        return sheet.seed if sheet is not None else self.seed + index

    def scene_reference(self, index: int) -> ImageRef | None:
        """The image a scene's shot starts from: its own, else its character's reference."""
        scene = self.scenes[index]
        if scene.image is not None:
            return scene.image
        sheet = self.scene_character(index)
        return sheet.reference if sheet is not None else None

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) in pixels, both even (H.264 with 4:2:0 chroma needs that)."""
        across, down = _ASPECTS[self.aspect_ratio]
        short = _even(self.resolution)
        if across >= down:
            return _even(short * across / down), short
        return short, _even(short * down / across)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema()

    @classmethod
    def from_text(cls, text: str, format: SpecFormat) -> FilmSpec:
        """Parse and validate; every problem is reported in `SpecInvalid.extra["problems"]`."""
        try:
            data = json.loads(text) if format == "json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise SpecInvalid(f"the spec is not valid {format.upper()}: {error}") from error
        if not isinstance(data, dict):
            raise SpecInvalid(f"the spec must be a {format.upper()} object of fields")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = describe_errors(error)
            raise SpecInvalid("; ".join(problems), problems=problems) from error

    @classmethod
    def from_file(cls, path: Path | str) -> FilmSpec:
        """Read a `.json`, `.yaml` or `.yml` spec; image paths in it are relative to its folder."""
        path = Path(path)
        formats: dict[str, SpecFormat] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
        if path.suffix.lower() not in formats:
            raise SpecInvalid(f"{path.name}: a spec file ends in .json, .yaml or .yml")
        return cls.from_text(path.read_text(encoding="utf-8"), formats[path.suffix.lower()])


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem, led by the field's dotted path: `scenes.2.duration_s: ...`."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "spec"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return lines


def _without_unused(data: Any) -> Any:
    """The dumped spec without the added fields that are left empty, at any depth."""
    if isinstance(data, list):
        return [_without_unused(item) for item in data]
    if not isinstance(data, dict):
        return data
    return {
        key: _without_unused(value)
        for key, value in data.items()
        if key not in ADDED_FIELDS or value
    }


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)

"""The Stable Audio Open music engine on a tiny random pipeline (pieces of at most 2.048 s at
2 kHz), loaded through the registry as Serve loads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.base import Mood, MusicRequest, MusicStyle
from models.errors import ModelUnavailable
from models.music import PEAK
from models.neural.stable_audio import (
    StableAudioMusicEngine,
    crossfade,
    music_prompt,
    pieces_needed,
)
from models.registry import Capability, build_engine, engine_info

RATE = 2000


@pytest.fixture(scope="module")
def engine(tiny: Callable[[str], Path]) -> StableAudioMusicEngine:
    folder = tiny("stable-audio")
    info = engine_info(Capability.music, "stable-audio")
    built = build_engine(info, folder.parent, {"steps": 2})
    assert isinstance(built, StableAudioMusicEngine)
    return built


def request(duration_s: float, seed: int = 3, **fields: object) -> MusicRequest:
    return MusicRequest.model_validate({"duration_s": duration_s, "seed": seed, **fields})


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


@pytest.mark.parametrize("duration_s", [1.3, 5.0], ids=["one-piece", "three-pieces"])
def test_the_score_lasts_the_asked_length_and_is_not_silent(
    engine: StableAudioMusicEngine, duration_s: float
) -> None:
    result = engine.compose(request(duration_s, mood=Mood.epic, tempo_bpm=120))
    audio = result.audio
    assert audio.sample_rate == RATE
    assert len(audio.samples) == round(duration_s * RATE)
    assert audio.samples.dtype == np.float32
    assert np.abs(audio.samples).max() == pytest.approx(PEAK, rel=1e-4)
    # Every half second has sound: the pieces and their crossfades leave no gap.
    halves = np.array_split(audio.samples, max(1, round(duration_s * 2)))
    assert min(rms(half) for half in halves) > 1e-3
    assert result.midi is None


def test_the_same_seed_gives_the_same_score_and_another_seed_another(
    engine: StableAudioMusicEngine,
) -> None:
    first, again, other = (engine.compose(request(1.0, seed=s)).audio.samples for s in (1, 1, 2))
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_film_without_music_gets_silence(engine: StableAudioMusicEngine) -> None:
    audio = engine.compose(request(2.5, style=MusicStyle.none)).audio
    assert len(audio.samples) == round(2.5 * RATE)
    assert not audio.samples.any()


def test_mood_tempo_and_style_make_the_prompt() -> None:
    sad = music_prompt(request(4.0, mood=Mood.sad, tempo_bpm=72))
    epic = music_prompt(request(4.0, mood=Mood.epic, tempo_bpm=140))
    assert "sad" in sad and "72 BPM" in sad
    assert "epic" in epic and "140 BPM" in epic
    sloka = music_prompt(request(4.0, style=MusicStyle.sloka, tempo_bpm=60))
    assert "tanpura" in sloka and "60 BPM" in sloka


@pytest.mark.parametrize(
    ("duration_s", "count"), [(10.0, 1), (47.0, 1), (48.0, 2), (92.0, 2), (93.0, 3), (600.0, 14)]
)
def test_pieces_of_47_s_overlapping_by_2_s_cover_the_film(duration_s: float, count: int) -> None:
    assert pieces_needed(duration_s, 47.0, 2.0) == count


def test_an_equal_power_crossfade_keeps_uncorrelated_pieces_level() -> None:
    rng = np.random.default_rng(0)
    pieces = [rng.standard_normal(20_000).astype(np.float32) for _ in range(3)]
    joined = crossfade(pieces, 4000)
    assert len(joined) == 3 * 20_000 - 2 * 4000
    assert np.array_equal(joined[:16_000], pieces[0][:16_000])
    assert np.array_equal(joined[-16_000:], pieces[2][-16_000:])
    seam = joined[16_000:20_000]
    assert rms(seam) == pytest.approx(rms(pieces[0]), rel=0.05)


def test_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        StableAudioMusicEngine(tmp_path / "nowhere")


def test_a_folder_of_another_pipeline_is_unavailable(tiny: Callable[[str], Path]) -> None:
    with pytest.raises(ModelUnavailable, match="expected StableAudioPipeline"):
        StableAudioMusicEngine(tiny("keyframes"))


def test_truncated_weights_are_unavailable(
    tiny: Callable[[str], Path], corrupt_copy: Callable[[Path, str], Path]
) -> None:
    broken = corrupt_copy(tiny("stable-audio"), "transformer/diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelUnavailable, match="cannot load StableAudioPipeline"):
        StableAudioMusicEngine(broken)

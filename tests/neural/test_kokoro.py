"""Kokoro-82M on a tiny random model in the published folder layout, phonemised by espeak-ng
offline: voices by language and gender, ages by rate and pitch, refusals with the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.base import AgeBand, Gender, Voice, VoiceRequest
from models.errors import ModelUnavailable, UnsupportedRequest
from models.neural.kokoro import SAMPLE_RATE, KokoroVoiceEngine


@pytest.fixture(scope="module")
def kokoro(tiny: Callable[[str], Path]) -> KokoroVoiceEngine:
    return KokoroVoiceEngine(tiny("kokoro"))


def say(engine: KokoroVoiceEngine, voice: Voice, text: str = "The lake wakes.") -> np.ndarray:
    audio = engine.synthesize(VoiceRequest(text=text, voice=voice))
    assert audio.sample_rate == SAMPLE_RATE
    return audio.samples


@pytest.mark.parametrize(
    ("voice", "pack"),
    [
        (Voice(), "af_heart"),
        (Voice(gender=Gender.male), "am_michael"),
        (Voice(language="en-gb"), "bf_emma"),
        (Voice(gender=Gender.male, language="hi"), "hm_omega"),
        (Voice(language="fr"), "ff_siwis"),
    ],
)
def test_a_voice_maps_to_the_pack_of_its_language_and_gender(
    kokoro: KokoroVoiceEngine, voice: Voice, pack: str
) -> None:
    assert kokoro.pack_for(voice) == pack


def test_speech_is_mono_float_audio_that_grows_with_the_text(kokoro: KokoroVoiceEngine) -> None:
    short, long = say(kokoro, Voice()), say(kokoro, Voice(), "The lake wakes, and the birds sing.")
    assert short.dtype == np.float32 and short.ndim == 1 and np.abs(short).max() <= 1.0
    assert 0 < len(short) < len(long)


def test_a_child_speaks_faster_and_an_elder_slower(kokoro: KokoroVoiceEngine) -> None:
    adult = len(say(kokoro, Voice()))
    child = len(say(kokoro, Voice(age=AgeBand.child)))
    elder = len(say(kokoro, Voice(age=AgeBand.elder)))
    assert child < adult < elder


def test_a_language_kokoro_does_not_speak_is_refused(kokoro: KokoroVoiceEngine) -> None:
    with pytest.raises(UnsupportedRequest, match="does not speak 'ta'"):
        say(kokoro, Voice(language="ta"))


def test_a_language_without_a_pack_of_that_gender_is_refused(kokoro: KokoroVoiceEngine) -> None:
    with pytest.raises(UnsupportedRequest, match="no male voice for 'it'"):
        kokoro.pack_for(Voice(gender=Gender.male, language="it"))


def test_a_folder_without_voice_packs_is_unavailable(
    tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = tmp_path / "kokoro"
    folder.mkdir()
    for name in ("config.json", "kokoro-v1_0.pth"):
        (folder / name).symlink_to(tiny("kokoro") / name)
    with pytest.raises(ModelUnavailable, match="holds no voice pack"):
        KokoroVoiceEngine(folder)

"""Coqui VITS and XTTS v2 voices on tiny random models saved in Coqui's own format."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.base import AgeBand, Gender, Voice, VoiceRequest
from models.errors import ModelUnavailable, UnsupportedRequest
from tests.services import require_module

require_module("TTS.tts.models.xtts", "coqui-tts needs torchaudio and torchcodec")

from models.neural.coqui import CoquiVoiceEngine, VitsVoiceEngine, XttsVoiceEngine  # noqa: E402

RATES = {"vits": 16000, "xtts": 24000}


@pytest.fixture(scope="module", params=["vits", "xtts"])
def engine(request: pytest.FixtureRequest, tiny: Callable[[str], Path]) -> CoquiVoiceEngine:
    return CoquiVoiceEngine.open(tiny(request.param))


def say(text: str = "Hello there.", seed: int = 1, **voice: str) -> VoiceRequest:
    return VoiceRequest(text=text, voice=Voice(**voice), seed=seed)


def test_open_picks_the_engine_for_the_folder(engine: CoquiVoiceEngine) -> None:
    expected = VitsVoiceEngine if engine.model_type == "vits" else XttsVoiceEngine
    assert type(engine) is expected
    assert engine.sample_rate == RATES[engine.model_type]


def test_speech_is_non_empty_audio_at_the_declared_rate(engine: CoquiVoiceEngine) -> None:
    audio = engine.synthesize(say("Hello there. Another sentence follows!"))
    assert audio.sample_rate == RATES[engine.model_type]
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration_s > 0.1
    assert np.abs(audio.samples).max() > 0


def test_the_same_seed_gives_the_same_speech_and_another_seed_another(
    engine: CoquiVoiceEngine,
) -> None:
    first, again, other = (engine.synthesize(say(seed=s)).samples for s in (1, 1, 2))
    assert np.array_equal(first, again)
    assert len(first) != len(other) or not np.array_equal(first, other)


def test_gender_picks_the_published_default_speakers(engine: CoquiVoiceEngine) -> None:
    female, male = Voice(gender=Gender.female), Voice(gender=Gender.male)
    expected = {"vits": ("p225", "p226"), "xtts": ("Ana Florence", "Damien Black")}
    assert (engine.speaker_for(female), engine.speaker_for(male)) == expected[engine.model_type]


def test_a_voices_json_beside_the_model_maps_age_bands(
    tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny("vits"), tmp_path / "vits")
    (folder / "voices.json").write_text(json.dumps({"male/elder": "p228", "female": "p227"}))
    engine = VitsVoiceEngine(folder)
    assert engine.speaker_for(Voice(gender=Gender.male, age=AgeBand.elder)) == "p228"
    assert engine.speaker_for(Voice(gender=Gender.female, age=AgeBand.child)) == "p227"
    assert engine.speaker_for(Voice(gender=Gender.male)) == "p226"


def test_xtts_maps_languages_and_refuses_unknown_ones(tiny: Callable[[str], Path]) -> None:
    engine = XttsVoiceEngine(tiny("xtts"))
    assert engine.language_for(Voice(language="zh")) == "zh-cn"
    assert engine.language_for(Voice(language="hi")) == "hi"
    with pytest.raises(UnsupportedRequest, match="does not speak 'ta'"):
        engine.synthesize(say(language="ta"))


def test_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        CoquiVoiceEngine.open(tmp_path / "nowhere")


def test_a_folder_of_the_other_model_is_unavailable(tiny: Callable[[str], Path]) -> None:
    with pytest.raises(ModelUnavailable, match="holds a Coqui 'xtts' model, not 'vits'"):
        VitsVoiceEngine(tiny("xtts"))


@pytest.mark.parametrize(("name", "weights"), [("vits", "model_file.pth"), ("xtts", "model.pth")])
def test_truncated_weights_are_unavailable(
    name: str, weights: str, tiny: Callable[[str], Path], corrupt_copy: Callable[[Path, str], Path]
) -> None:
    with pytest.raises(ModelUnavailable, match=f"cannot load Coqui {name}"):
        CoquiVoiceEngine.open(corrupt_copy(tiny(name), weights))

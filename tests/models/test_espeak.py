"""The eSpeak NG voice engine: audible, distinct speakers, pauses, languages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.base import AgeBand, Audio, Gender, Voice, VoiceRequest
from models.espeak import VOICES, EspeakVoiceEngine, espeak_language, supports

ENGINE = EspeakVoiceEngine()
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it rests by the warm river."


def speak(text: str = SENTENCE, **voice: str) -> Audio:
    return ENGINE.synthesize(VoiceRequest(text=text, voice=Voice.model_validate(voice)))


def fundamental(audio: Audio) -> float:
    """Median F0 of the voiced 40 ms frames, by autocorrelation between 60 and 500 Hz."""
    rate, samples = audio.sample_rate, audio.samples
    size = int(0.04 * rate)
    shortest, longest = rate // 500, rate // 60
    estimates = []
    for start in range(0, len(samples) - size, size // 2):
        frame = samples[start : start + size] - samples[start : start + size].mean()
        if np.sqrt(np.mean(frame**2)) < 0.05:
            continue
        correlation = np.correlate(frame, frame, "full")[size - 1 :]
        lag = shortest + int(np.argmax(correlation[shortest:longest]))
        if correlation[lag] > 0.4 * correlation[0]:
            estimates.append(rate / lag)
    return float(np.median(estimates))


def quiet_gaps(audio: Audio, threshold: float = 0.01) -> list[float]:
    """Lengths in seconds of the runs of 10 ms windows quieter than `threshold` RMS, between
    the first and the last sound."""
    hop = audio.sample_rate // 100
    windows = audio.samples[: len(audio.samples) // hop * hop].reshape(-1, hop)
    loud = np.sqrt((windows**2).mean(axis=1)) >= threshold
    inside = loud[np.argmax(loud) : len(loud) - np.argmax(loud[::-1])]
    gaps, run = [], 0
    for is_loud in inside:
        if is_loud and run:
            gaps.append(run / 100)
        run = 0 if is_loud else run + 1
    return gaps


def test_speech_is_audible_mono_float() -> None:
    audio = speak()
    assert audio.sample_rate == 22050
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert np.abs(audio.samples).max() <= 1.0
    assert np.sqrt(np.mean(audio.samples**2)) > 0.03
    assert 2.0 < audio.duration_s < 10.0


def test_duration_grows_with_text() -> None:
    short, longer = speak("The lamp."), speak("The lamp burns all night by the river bank.")
    assert longer.duration_s > 1.5 * short.duration_s


def test_there_are_six_voices_and_all_speak() -> None:
    assert len(VOICES) == 6
    for gender, age in VOICES:
        assert supports(Voice(gender=gender, age=age))
        assert np.sqrt(np.mean(speak(gender=gender, age=age).samples ** 2)) > 0.03


def test_voices_differ_in_pitch_by_gender_and_age() -> None:
    pitch = {(gender, age): fundamental(speak(gender=gender, age=age)) for gender, age in VOICES}
    children = [pitch[gender, AgeBand.child] for gender in Gender]
    adults = [pitch[gender, AgeBand.adult] for gender in Gender]
    assert min(children) > 1.1 * max(adults)
    for age in AgeBand:
        assert pitch[Gender.female, age] > 1.15 * pitch[Gender.male, age], age
    assert pitch[Gender.male, AgeBand.adult] < 140
    assert pitch[Gender.female, AgeBand.adult] > 170


def test_elders_speak_slower() -> None:
    for gender in Gender:
        adult = speak(gender=gender, age=AgeBand.adult).duration_s
        elder = speak(gender=gender, age=AgeBand.elder).duration_s
        assert elder > 1.15 * adult, gender


def test_full_stop_leaves_a_pause() -> None:
    stopped = max(quiet_gaps(speak("We walked to the river. Then we sat down.")))
    run_on = max(quiet_gaps(speak("We walked to the river then we sat down")))
    assert stopped >= 0.2
    assert stopped > run_on + 0.1


def test_unknown_language_is_refused() -> None:
    assert not supports(Voice(language="xx"))
    with pytest.raises(ValueError, match="'xx'"):
        speak(language="xx")


@pytest.mark.parametrize(
    ("language", "voice"),
    [
        ("en", "en"),
        ("en-us", "en-us"),
        ("pt-br", "pt-br"),
        ("de-at", "de"),
        ("hi", "hi"),
        ("sa", "hi"),
    ],
)
def test_language_tags_map_to_espeak_voices(language: str, voice: str) -> None:
    assert espeak_language(language) == voice


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("hi", "नदी के किनारे एक दीपक जलता है।"),
        ("sa", "ॐ भूर्भुवः स्वः तत्सवितुर्वरेण्यम्।"),
        ("es", "La lámpara arde junto al río."),
        ("fr", "La lampe brûle près de la rivière."),
        ("de", "Die Lampe brennt am Fluss."),
    ],
)
def test_other_languages_speak(language: str, text: str) -> None:
    audio = speak(text, language=language)
    assert audio.duration_s > 1.0
    assert np.sqrt(np.mean(audio.samples**2)) > 0.03


def test_concurrent_requests_each_get_their_own_speech() -> None:
    """Callers on many threads share one library: every result is its own voice, whole."""
    voices = [(Gender.female, AgeBand.child), (Gender.male, AgeBand.adult)] * 4
    alone = {voice: speak(gender=voice[0], age=voice[1]) for voice in set(voices)}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda voice: speak(gender=voice[0], age=voice[1]), voices))
    for voice, audio in zip(voices, results, strict=True):
        assert abs(audio.duration_s - alone[voice].duration_s) < 0.05
        assert abs(fundamental(audio) / fundamental(alone[voice]) - 1) < 0.1

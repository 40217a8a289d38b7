"""The OpenAI and ElevenLabs voice clients against a local server that behaves like the APIs."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import AgeBand, Gender, Voice, VoiceRequest
from models.errors import ProviderAuthError, ProviderRejected, ProviderUnavailable
from models.neural.http_voices import SAMPLE_RATE, ElevenLabsVoiceEngine, OpenAIVoiceEngine
from tests.neural.fake_tts import ELEVEN_KEY, OPENAI_KEY, FakeTTS


def say(text: str = "The river remembers.", **voice: str) -> VoiceRequest:
    return VoiceRequest(text=text, voice=Voice(**voice), seed=5)


def openai(fake: FakeTTS, key: str = OPENAI_KEY, **options: object) -> OpenAIVoiceEngine:
    return OpenAIVoiceEngine(key, base_url=fake.url, backoff_s=0.01, **options)  # type: ignore[arg-type]


def eleven(fake: FakeTTS, key: str = ELEVEN_KEY, **options: object) -> ElevenLabsVoiceEngine:
    return ElevenLabsVoiceEngine(key, base_url=fake.url, backoff_s=0.01, **options)  # type: ignore[arg-type]


def test_openai_speech_is_24khz_audio_for_the_mapped_voice(fake_tts: FakeTTS) -> None:
    audio = openai(fake_tts).synthesize(say(gender="male", age="elder"))
    assert audio.sample_rate == SAMPLE_RATE == 24000
    assert audio.duration_s > 0.1 and np.abs(audio.samples).max() > 0.1
    (sent,) = fake_tts.requests
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.body["voice"] == "fable" and sent.body["response_format"] == "pcm"
    assert "elderly male" in sent.body["instructions"]


def test_openai_tts_1_gets_no_instructions(fake_tts: FakeTTS) -> None:
    openai(fake_tts, model="tts-1").synthesize(say())
    assert "instructions" not in fake_tts.requests[0].body


def test_long_text_is_sent_in_pieces_under_the_api_limit(fake_tts: FakeTTS) -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(300))
    audio = openai(fake_tts).synthesize(say(text))
    assert len(fake_tts.requests) == 3
    assert all(len(r.body["input"]) <= 4000 for r in fake_tts.requests)
    assert " ".join(r.body["input"] for r in fake_tts.requests) == text
    assert audio.duration_s > 0.02 * len(text)


def test_elevenlabs_picks_a_library_voice_by_gender_and_age(fake_tts: FakeTTS) -> None:
    engine = eleven(fake_tts)
    audio = engine.synthesize(say(gender="female", age="elder"))
    engine.synthesize(say(gender="male"))
    assert audio.sample_rate == 24000 and audio.duration_s > 0.1
    listing, first, second = fake_tts.requests
    assert listing.path == "/v1/voices"
    assert first.path == "/v1/text-to-speech/v-old-f" and second.path.endswith("/v-mid-m")
    assert first.query == {"output_format": ["pcm_24000"]}
    assert first.headers["xi-api-key"] == ELEVEN_KEY
    assert first.body == {"model_id": "eleven_multilingual_v2", "seed": 5, "text": say().text}


def test_elevenlabs_voices_mapping_skips_the_library(fake_tts: FakeTTS) -> None:
    engine = eleven(fake_tts, voices={"female": "v-young-f"}, model_id="eleven_flash_v2_5")
    engine.synthesize(say(gender=Gender.female, age=AgeBand.child, language="hi"))
    (sent,) = fake_tts.requests
    assert sent.path.endswith("/v-young-f") and sent.body["language_code"] == "hi"


def test_rate_limits_are_retried_after_the_time_asked(fake_tts: FakeTTS) -> None:
    fake_tts.fail_next(429, times=2, retry_after="0")
    audio = openai(fake_tts).synthesize(say())
    assert len(fake_tts.requests) == 3 and audio.duration_s > 0


def test_server_errors_are_retried_then_reported(fake_tts: FakeTTS) -> None:
    fake_tts.fail_next(503, times=10)
    with pytest.raises(ProviderUnavailable, match="503"):
        eleven(fake_tts, voices={"female": "v-mid-f"}, max_retries=2).synthesize(say())
    assert len(fake_tts.requests) == 3


def test_a_retry_after_longer_than_we_wait_fails_at_once(fake_tts: FakeTTS) -> None:
    fake_tts.fail_next(429, retry_after="3600")
    with pytest.raises(ProviderUnavailable, match="retry after 3600 s"):
        openai(fake_tts).synthesize(say())
    assert len(fake_tts.requests) == 1


@pytest.mark.parametrize("client", [openai, eleven])
def test_a_wrong_key_fails_at_once_with_the_providers_message(
    fake_tts: FakeTTS, client: object
) -> None:
    with pytest.raises(ProviderAuthError, match=r"401: (Incorrect|Invalid) API key"):
        client(fake_tts, key="wrong").synthesize(say())  # type: ignore[operator]
    assert len(fake_tts.requests) == 1


def test_a_rejected_request_fails_at_once_with_the_providers_message(fake_tts: FakeTTS) -> None:
    engine = openai(fake_tts, voices={"female/adult": "nobody"})
    with pytest.raises(ProviderRejected, match="400: Invalid value for 'voice'"):
        engine.synthesize(say())
    assert len(fake_tts.requests) == 1


def test_an_unknown_elevenlabs_voice_is_rejected(fake_tts: FakeTTS) -> None:
    with pytest.raises(ProviderRejected, match="404: A voice with voice_id ghost"):
        eleven(fake_tts, voices={"female": "ghost"}).synthesize(say())

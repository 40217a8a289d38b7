"""Hosted voices: OpenAI's speech API and ElevenLabs' text-to-speech API, over httpx.

Both answer raw 24 kHz 16-bit little-endian mono PCM, which needs no decoder. Requests follow
the hosted engines' retry policy (`models.neural.provider_http`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from models.base import AgeBand, Audio, Gender, Voice, VoiceRequest
from models.errors import ProviderRejected
from models.neural.provider_http import ProviderHttp

SAMPLE_RATE = 24000
_MAX_CHARS = 4000  # under OpenAI's 4096 and ElevenLabs' 5000 characters per request


def _pcm16(data: bytes) -> np.ndarray:
    usable = len(data) - len(data) % 2
    return np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0


def _chunks(text: str, limit: int = _MAX_CHARS) -> list[str]:
    """Text in pieces under `limit` characters, split between sentences where possible."""
    chunks: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            chunks.append(sentence[:cut])
            sentence = sentence[cut:].strip()
        if chunks and len(chunks[-1]) + 1 + len(sentence) <= limit:
            chunks[-1] = f"{chunks[-1]} {sentence}"
        elif sentence:
            chunks.append(sentence)
    return chunks


class HttpVoiceEngine(ProviderHttp):
    """A hosted voice: the provider's client; subclasses build the provider's requests."""

    version: ClassVar[str] = "1"
    licence: ClassVar[str]


_OPENAI_VOICES = {
    "female/adult": "nova",
    "female/elder": "sage",
    "female/child": "shimmer",
    "male/adult": "onyx",
    "male/elder": "fable",
    "male/child": "echo",
}
_AGE_WORDS = {AgeBand.child: "a child", AgeBand.adult: "an adult", AgeBand.elder: "an elderly"}


def _key(voice: Voice) -> str:
    return f"{voice.gender.value}/{voice.age.value}"


class OpenAIVoiceEngine(HttpVoiceEngine):
    """POST {base}/v1/audio/speech. Models other than tts-1/tts-1-hd also get `instructions`
    describing the speaker's age and gender; the API has no seed, so takes may differ."""

    name: ClassVar[str] = "openai-tts"
    # OpenAI's terms give the customer the output; its usage policies require telling listeners
    # that the voice is AI-generated.
    licence: ClassVar[str] = "openai-usage-policy"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.openai.com",
        model: str = "gpt-4o-mini-tts",
        voices: Mapping[str, str] | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
    ) -> None:
        super().__init__(
            base_url,
            {"Authorization": f"Bearer {api_key}"},
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_wait_s=max_wait_s,
        )
        self.model = model
        self.voices = {**_OPENAI_VOICES, **(voices or {})}

    def voice_for(self, voice: Voice) -> str:
        return self.voices.get(_key(voice)) or self.voices[f"{voice.gender.value}/adult"]

    def synthesize(self, request: VoiceRequest) -> Audio:
        body: dict[str, Any] = {
            "model": self.model,
            "voice": self.voice_for(request.voice),
            "response_format": "pcm",
        }
        if not self.model.startswith("tts-1"):
            voice = request.voice
            body["instructions"] = (
                f"Speak as {_AGE_WORDS[voice.age]} {voice.gender.value} narrator,"
                f" in the language with code {voice.language}."
            )
        parts = [
            _pcm16(self._request("POST", "/v1/audio/speech", json={**body, "input": chunk}).content)
            for chunk in _chunks(request.text)
        ]
        return Audio(np.concatenate(parts) if parts else np.zeros(0, np.float32), SAMPLE_RATE)


# Voice-library labels ElevenLabs gives each voice, in order of preference per age band.
_ELEVEN_AGES = {
    AgeBand.child: ("young",),
    AgeBand.adult: ("middle aged", "middle-aged", "young"),
    AgeBand.elder: ("old",),
}
# Models that accept `language_code` (the others detect the language from the text).
_ELEVEN_LANGUAGE_MODELS = {"eleven_turbo_v2_5", "eleven_flash_v2_5"}


class ElevenLabsVoiceEngine(HttpVoiceEngine):
    """POST {base}/v1/text-to-speech/{voice_id}?output_format=pcm_24000 with the `xi-api-key`
    header. Voices come from `voices` ("female/elder" or "female" to a voice id), else from the
    account's voice list (GET /v1/voices), matched on its gender and age labels."""

    name: ClassVar[str] = "elevenlabs"
    # ElevenLabs' terms: commercial use of output needs a paid plan; AI disclosure applies.
    licence: ClassVar[str] = "elevenlabs-terms"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.elevenlabs.io",
        model_id: str = "eleven_multilingual_v2",
        voices: Mapping[str, str] | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
    ) -> None:
        super().__init__(
            base_url,
            {"xi-api-key": api_key},
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_wait_s=max_wait_s,
        )
        self.model_id = model_id
        self.voices = dict(voices or {})
        self._library: list[dict[str, Any]] | None = None

    def voice_for(self, voice: Voice) -> str:
        for key in (_key(voice), voice.gender.value):
            if key in self.voices:
                return self.voices[key]
        if self._library is None:
            self._library = self._request("GET", "/v1/voices").json()["voices"]
        return _pick(self._library, voice.gender, voice.age)

    def synthesize(self, request: VoiceRequest) -> Audio:
        path = f"/v1/text-to-speech/{self.voice_for(request.voice)}"
        body: dict[str, Any] = {"model_id": self.model_id, "seed": request.seed % 2**32}
        if self.model_id in _ELEVEN_LANGUAGE_MODELS:
            body["language_code"] = request.voice.language.split("-")[0]
        parts = [
            _pcm16(
                self._request(
                    "POST",
                    path,
                    params={"output_format": "pcm_24000"},
                    json={**body, "text": chunk},
                ).content
            )
            for chunk in _chunks(request.text)
        ]
        return Audio(np.concatenate(parts) if parts else np.zeros(0, np.float32), SAMPLE_RATE)


def _pick(library: list[dict[str, Any]], gender: Gender, age: AgeBand) -> str:
    """The first voice labelled with the gender and the most preferred age, else the gender."""
    if not library:
        raise ProviderRejected("elevenlabs", None, "the account has no voices")

    def labels(v: dict[str, Any]) -> dict[str, str]:
        return {k: str(x).lower() for k, x in (v.get("labels") or {}).items()}

    same = [v for v in library if labels(v).get("gender") == gender.value]
    for wanted in _ELEVEN_AGES[age]:
        for v in same:
            if labels(v).get("age") == wanted:
                return str(v["voice_id"])
    return str((same or library)[0]["voice_id"])

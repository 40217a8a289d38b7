"""Speech from eSpeak NG, the CPU stand-in for a neural voice.

It calls the libespeak-ng that `espeakng_loader` ships, with its own voice data, through ctypes:
no system package is needed. Gender and age come from eSpeak's voice variants (formant sets and
pitch ranges) together with its pitch, range and rate parameters. The library is one state
machine per process, so every call goes through one lock and the library is initialised once.

The request's seed is not used. eSpeak carries the phase of its pitch flutter from one utterance
to the next, so a repeated request gives speech that differs by a few samples, never in what is
said or how.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import espeakng_loader
import numpy as np

from models.base import AgeBand, Audio, Gender, Voice, VoiceRequest

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _PITCH, _RANGE = 1, 3, 4
_EE_OK = 0


@dataclass(frozen=True)
class VoiceStyle:
    """An eSpeak variant and the parameters that make it one speaker.

    `rate` is in words per minute; `pitch` and `range` are eSpeak's 0-100 scales.
    """

    variant: str
    rate: int
    pitch: int
    range: int


VOICES: dict[tuple[Gender, AgeBand], VoiceStyle] = {
    (Gender.female, AgeBand.child): VoiceStyle("zac", rate=180, pitch=45, range=70),
    (Gender.female, AgeBand.adult): VoiceStyle("f3", rate=165, pitch=50, range=50),
    (Gender.female, AgeBand.elder): VoiceStyle("grandma", rate=130, pitch=30, range=60),
    (Gender.male, AgeBand.child): VoiceStyle("f1", rate=180, pitch=80, range=65),
    (Gender.male, AgeBand.adult): VoiceStyle("m3", rate=165, pitch=45, range=50),
    (Gender.male, AgeBand.elder): VoiceStyle("grandpa", rate=130, pitch=35, range=40),
}
"""One speaker per gender and age band. Children: small vocal tracts (formants scaled up) and
high pitch, a little faster; elders: slower, with the tremor ('flutter') of the old variants.
The boy borrows a raised-formant variant because eSpeak has no child male one."""

FALLBACKS: dict[str, str] = {"sa": "hi", "zh": "cmn"}
"""Languages eSpeak lacks, spoken with the closest one it has (Sanskrit with Hindi's rules)."""

_DATA = Path(espeakng_loader.get_data_path())
LANGUAGES: frozenset[str] = frozenset(
    path.name.lower() for path in (_DATA / "lang").rglob("*") if path.is_file()
)
"""The language voices in the shipped data, as lower-case identifiers: 'en', 'en-us', 'hi'..."""


def espeak_language(language: str) -> str | None:
    """The eSpeak voice for a language tag ('pt-br', 'en', 'sa'), or None if there is none."""
    tag = language.lower()
    for candidate in (tag, tag.split("-")[0]):
        candidate = FALLBACKS.get(candidate, candidate)
        if candidate in LANGUAGES:
            return candidate
    return None


def supports(voice: Voice) -> bool:
    return espeak_language(voice.language) is not None and (voice.gender, voice.age) in VOICES


class EspeakVoiceEngine:
    name: ClassVar[str] = "espeak-ng"
    version: ClassVar[str] = "1.52.0-1"
    licence: ClassVar[str] = "GPL-3.0-or-later"

    def synthesize(self, request: VoiceRequest) -> Audio:
        language = espeak_language(request.voice.language)
        if language is None:
            raise ValueError(f"espeak-ng has no voice for language {request.voice.language!r}")
        style = VOICES[request.voice.gender, request.voice.age]
        return _library().speak(request.text, f"{language}+{style.variant}", style)


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """The process's libespeak-ng: loaded and initialised once, used under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chunks: list[np.ndarray] = []
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(_DATA).encode(), 0
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with {self.sample_rate}")
        self.callback = _SynthCallback(self._collect)
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None
    ) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, voice: str, style: VoiceStyle) -> Audio:
        encoded = text.encode("utf-8")
        with self.lock:
            self.chunks = []
            status = self.lib.espeak_SetVoiceByName(voice.encode())
            if status != _EE_OK:
                raise ValueError(f"espeak-ng could not select voice {voice!r} (error {status})")
            for parameter, value in (
                (_RATE, style.rate),
                (_PITCH, style.pitch),
                (_RANGE, style.range),
            ):
                self.lib.espeak_SetParameter(parameter, value, 0)
            status = self.lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
            self.lib.espeak_Synchronize()
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with {status}")
            chunks, self.chunks = self.chunks, []
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return Audio((samples / 32768.0).astype(np.float32), self.sample_rate)


_instance: _Espeak | None = None
_instance_lock = threading.Lock()


def _library() -> _Espeak:
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _Espeak()
        return _instance

"""Kokoro-82M voices (package `kokoro`, Apache-2.0 weights) from a local folder laid out as the
published model: `config.json`, `kokoro-v1_0.pth` and `voices/<pack>.pt`.

Kokoro's own English front end (`misaki.en.G2P`) downloads a spaCy model at run time; this engine
phonemises with espeak-ng instead (`misaki.espeak.EspeakG2P`, the library `espeakng-loader`
ships), which needs nothing from a network. A voice pack has a gender and a language, not an age:
child and elder voices are the adult pack spoken faster and higher, or slower and lower (spoken
at a rate that, resampled to the new pitch, ends at the intended speed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import AgeBand, Audio, Voice, VoiceRequest
from models.errors import ModelUnavailable, UnsupportedRequest
from models.neural.folders import model_revision, resolve_model_dir

SAMPLE_RATE = 24_000
_CHECKPOINTS = ("kokoro-v1_0.pth", "kokoro-v1_1-zh.pth", "model.pth")


@dataclass(frozen=True)
class Language:
    """A Kokoro language: its pack prefix letter and the espeak-ng voice that phonemises it."""

    prefix: str
    espeak: str


# Kokoro v1.0 languages by the Voice's language tag (BCP 47 primary or full tag).
LANGUAGES: dict[str, Language] = {
    "en": Language("a", "en-us"),
    "en-us": Language("a", "en-us"),
    "en-gb": Language("b", "en-gb"),
    "es": Language("e", "es"),
    "fr": Language("f", "fr-fr"),
    "hi": Language("h", "hi"),
    "it": Language("i", "it"),
    "pt": Language("p", "pt-br"),
    "pt-br": Language("p", "pt-br"),
}

# Speed and pitch (semitones) that stand in for the age bands the packs lack.
_AGE = {AgeBand.child: (1.08, 4.0), AgeBand.adult: (1.0, 0.0), AgeBand.elder: (0.9, -2.0)}
# Packs the Kokoro-82M card grades best, first choice per prefix and gender.
_PREFERRED = (
    "af_heart", "am_michael", "bf_emma", "bm_george", "ff_siwis", "hf_alpha", "hm_omega",
    "if_sara", "im_nicola", "ef_dora", "em_alex", "pf_dora", "pm_alex",
)  # fmt: skip


class KokoroVoiceEngine:
    """Speaks one sentence per call with the pack for the voice's language and gender."""

    name: ClassVar[str] = "kokoro"
    version: ClassVar[str] = "1"
    # hexgrad/Kokoro-82M model card: Apache-2.0.
    licence: ClassVar[str] = "apache-2.0"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        voices: Mapping[str, str] | None = None,
    ) -> None:
        folder = resolve_model_dir(model_dir, ("config.json",))
        checkpoint = next((folder / n for n in _CHECKPOINTS if (folder / n).is_file()), None)
        if checkpoint is None:
            raise ModelUnavailable(f"{folder} has no Kokoro checkpoint ({', '.join(_CHECKPOINTS)})")
        self.packs = {p.stem: p for p in sorted((folder / "voices").glob("*.pt"))}
        if not self.packs:
            raise ModelUnavailable(f"{folder}/voices holds no voice pack (*.pt)")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            from kokoro import KModel

            self.model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"),
                                model=str(checkpoint)).to(self.device).eval()  # fmt: skip
        except Exception as error:
            raise ModelUnavailable(
                f"cannot load Kokoro from {folder}: {type(error).__name__}: {error}"
            ) from error
        self.voices = dict(voices or {})
        self.model_revision = model_revision(folder)
        self._g2p: dict[str, Any] = {}
        self._styles: dict[str, torch.Tensor] = {}

    def pack_for(self, voice: Voice) -> str:
        """The pack for a voice: a `voices` mapping ("en/female" or "female"), else the
        preferred pack of its language and gender, else the first such pack in the folder."""
        language = self._language(voice)
        for key in (f"{voice.language}/{voice.gender.value}", voice.gender.value):
            if key in self.voices:
                return self.voices[key]
        start = f"{language.prefix}{voice.gender.value[0]}_"
        found = [name for name in self.packs if name.startswith(start)]
        if not found:
            raise UnsupportedRequest(f"Kokoro has no {voice.gender} voice for {voice.language!r}")
        preferred = [name for name in _PREFERRED if name in found]
        return (preferred or found)[0]

    def synthesize(self, request: VoiceRequest) -> Audio:
        language = self._language(request.voice)
        speed, semitones = _AGE[request.voice.age]
        ratio = 2.0 ** (semitones / 12)
        phonemes = self._phonemes(language, request.text)
        if not phonemes:
            return Audio(np.zeros(0, np.float32), SAMPLE_RATE)
        pack = self._style(self.pack_for(request.voice))
        pieces = []
        limit = self.model.context_length - 2
        for start in range(0, len(phonemes), limit):
            chunk = phonemes[start : start + limit]
            style = pack[min(len(chunk), len(pack)) - 1]
            with torch.inference_mode():
                pieces.append(self.model(chunk, style, speed / ratio).float().numpy())
        samples = np.concatenate(pieces).astype(np.float32)
        if semitones:
            samples = _squeeze(samples, ratio)
        return Audio(np.clip(samples, -1.0, 1.0), SAMPLE_RATE)

    def _language(self, voice: Voice) -> Language:
        tag = voice.language.lower()
        language = LANGUAGES.get(tag) or LANGUAGES.get(tag.split("-")[0])
        if language is None:
            raise UnsupportedRequest(f"Kokoro does not speak {voice.language!r}")
        return language

    def _phonemes(self, language: Language, text: str) -> str:
        if language.espeak not in self._g2p:
            from misaki.espeak import EspeakG2P

            self._g2p[language.espeak] = EspeakG2P(language=language.espeak)
        phonemes, _ = self._g2p[language.espeak](text)
        return "".join(p for p in phonemes if p in self.model.vocab or p == " ").strip()

    def _style(self, pack: str) -> torch.Tensor:
        """The pack's style vectors, one per phoneme count, (N, 1, 256)."""
        if pack not in self._styles:
            if pack not in self.packs:
                raise UnsupportedRequest(f"Kokoro voice pack {pack!r} is not in the model folder")
            self._styles[pack] = torch.load(self.packs[pack], weights_only=True).to(self.device)
        return self._styles[pack]


def _squeeze(samples: np.ndarray, ratio: float) -> np.ndarray:
    """The samples played `ratio` times faster: pitch up by `ratio`, duration down by it."""
    count = max(1, round(len(samples) / ratio))
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)

"""Coqui TTS voices (package `coqui-tts`): VITS and XTTS v2 folders through Coqui's own loaders.

A scene's Voice picks a speaker: an explicit `voices` mapping ("female/elder" or "female" to a
speaker name), else the folder's `voices.json` with the same keys, else a known default of the
published model (XTTS v2 studio speakers, VCTK speakers), else a stable choice among the model's
speakers. XTTS v2 has no child or elderly studio voices: age bands only map where a mapping says.
"""

from __future__ import annotations

import inspect
import json
import textwrap
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import Audio, Voice, VoiceRequest
from models.errors import ModelUnavailable, UnsupportedRequest
from models.neural.device import seeded
from models.neural.folders import model_revision, resolve_model_dir

# First speaker present wins. XTTS v2 studio speakers, and VCTK p225 (F) / p226 (M).
_DEFAULT_SPEAKERS = {"female": ("Ana Florence", "p225"), "male": ("Damien Black", "p226")}
# Files Coqui's model manager points a downloaded config at (TTS.utils.manage._update_paths).
_SIDE_FILES = {
    "speakers_file": ("speaker_ids.json", "speaker_ids.pth", "speakers.json", "speakers.pth"),
    "d_vector_file": ("speakers.json", "speakers.pth"),
    "language_ids_file": ("language_ids.json",),
}
_VITS_CHECKPOINTS = ("model_file.pth", "model_file.pth.tar", "model.pth", "checkpoint.pth")
_PAUSE_S = 0.15
_MAX_CHARS = 240  # XTTS' per-sentence limit is 250 characters for English and less for others


def _import_tts() -> Any:
    try:
        import TTS.config
        import TTS.tts.models
    except ImportError as error:
        raise ModelUnavailable(f"coqui-tts cannot be imported: {error}") from error
    return TTS


class CoquiVoiceEngine(ABC):
    """Common loading, voice mapping and synthesis; `open` picks the subclass for a folder."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    licence: ClassVar[str]
    model_type: ClassVar[str]

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        voices: Mapping[str, str] | None = None,
    ) -> None:
        folder = resolve_model_dir(model_dir, ("config.json",))
        tts = _import_tts()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            config = tts.config.load_config(str(folder / "config.json"))
        except Exception as error:
            raise ModelUnavailable(f"{folder}/config.json is unreadable: {error}") from error
        if config.model != self.model_type:
            raise ModelUnavailable(
                f"{folder} holds a Coqui {config.model!r} model, not {self.model_type!r}"
            )
        try:
            self.model = self._load(tts, folder, config).to(self.device)
        except Exception as error:
            raise ModelUnavailable(
                f"cannot load Coqui {config.model} from {folder}: {type(error).__name__}: {error}"
            ) from error
        self.config = config
        self.model_revision = model_revision(folder)
        self.sample_rate = int(
            config.audio.get("output_sample_rate") or config.audio["sample_rate"]
        )
        sidecar = folder / "voices.json"
        self.voices = dict(voices or (json.loads(sidecar.read_text()) if sidecar.is_file() else {}))

    @staticmethod
    def open(model_dir: str | Path, **options: Any) -> CoquiVoiceEngine:
        """The engine for whatever Coqui model the folder holds (by its config's "model")."""
        folder = resolve_model_dir(model_dir, ("config.json",))
        try:
            model_type = json.loads((folder / "config.json").read_text())["model"]
        except (ValueError, KeyError) as error:
            raise ModelUnavailable(f"{folder}/config.json is unreadable: {error}") from error
        engines = {cls.model_type: cls for cls in (VitsVoiceEngine, XttsVoiceEngine)}
        if model_type not in engines:
            raise ModelUnavailable(f"{folder} holds a Coqui {model_type!r} model, not VITS or XTTS")
        return engines[model_type](folder, **options)

    @abstractmethod
    def _load(self, tts: Any, folder: Path, config: Any) -> Any:
        """Build the model from its config and load its weights with Coqui's loader."""

    @abstractmethod
    def _say(self, text: str, speaker: str | None, language: str | None) -> np.ndarray:
        """One sentence of speech."""

    @property
    def speakers(self) -> list[str]:
        manager = self.model.speaker_manager
        return sorted(manager.name_to_id) if manager is not None else []

    def speaker_for(self, voice: Voice) -> str | None:
        speakers = self.speakers
        if not speakers:
            return None
        for key in (f"{voice.gender.value}/{voice.age.value}", voice.gender.value):
            if key in self.voices:
                return self.voices[key]
        for name in _DEFAULT_SPEAKERS[voice.gender.value]:
            if name in speakers:
                return name
        return speakers[zlib.crc32(f"{voice.gender}/{voice.age}".encode()) % len(speakers)]

    def language_for(self, voice: Voice) -> str | None:
        """The model's code for the voice's language; None for single-language models."""
        return None

    def synthesize(self, request: VoiceRequest) -> Audio:
        speaker = self.speaker_for(request.voice)
        language = self.language_for(request.voice)
        pause = np.zeros(round(_PAUSE_S * self.sample_rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        with seeded(request.seed, self.device), torch.inference_mode():
            for sentence in _sentences(request.text, language):
                pieces += [np.asarray(self._say(sentence, speaker, language), np.float32), pause]
        samples = np.concatenate(pieces[:-1]) if pieces else np.zeros(0, np.float32)
        return Audio(samples=np.clip(samples, -1.0, 1.0), sample_rate=self.sample_rate)


def _sentences(text: str, language: str | None) -> list[str]:
    """Sentences (pySBD), long ones wrapped at word boundaries to the model's limit."""
    import pysbd

    code = (language or "en").split("-")[0]
    segmenter = pysbd.Segmenter(language=code if code in pysbd.languages.LANGUAGE_CODES else "en")
    return [
        piece
        for sentence in segmenter.segment(text)
        for piece in textwrap.wrap(sentence.strip(), _MAX_CHARS)
        if piece.strip()
    ]


def _point_side_files(config: Any, folder: Path) -> None:
    """Point speaker/language files named in the config at the copies in `folder`, as Coqui's
    model manager does after a download (configs carry the training machine's paths)."""
    for key, defaults in _SIDE_FILES.items():
        named = config.get(key) or config.model_args.get(key) or ""
        named = named[0] if isinstance(named, list) else named
        if not named:
            continue
        for candidate in (Path(named).name, *defaults):
            if (folder / candidate).is_file():
                config[key] = str(folder / candidate)
                if key in config.model_args:
                    config.model_args[key] = str(folder / candidate)
                break


class VitsVoiceEngine(CoquiVoiceEngine):
    name: ClassVar[str] = "coqui-vits"
    # Coqui's published VITS checkpoints (LJSpeech, VCTK) are Apache-2.0 in its model catalogue
    # (TTS/.models.json); Common Voice / CSS10 ones are BSD-3-Clause: check the folder's model.
    licence: ClassVar[str] = "apache-2.0"
    model_type: ClassVar[str] = "vits"

    def _load(self, tts: Any, folder: Path, config: Any) -> Any:
        checkpoint = next((folder / n for n in _VITS_CHECKPOINTS if (folder / n).is_file()), None)
        if checkpoint is None:
            raise FileNotFoundError(f"none of {', '.join(_VITS_CHECKPOINTS)}")
        _point_side_files(config, folder)
        model = tts.tts.models.setup_model(config=config)
        model.load_checkpoint(config, checkpoint_path=str(checkpoint), eval=True)
        return model

    def language_for(self, voice: Voice) -> str | None:
        manager = self.model.language_manager
        if manager is None or manager.num_languages <= 1:
            return None
        for code in (voice.language, voice.language.split("-")[0]):
            if code in manager.name_to_id:
                return code
        raise UnsupportedRequest(f"{self.name} does not speak {voice.language!r}")

    def _say(self, text: str, speaker: str | None, language: str | None) -> np.ndarray:
        return self.model.synthesize(text, speaker=speaker, language=language)["wav"]


def _gpt2_kv_cache_works() -> bool:
    """coqui-tts 0.28's XTTS decoder reads `past_key_values`; transformers releases that renamed
    the generation cache to `cache` leave it None, so XTTS must then generate without a cache."""
    from transformers import GPT2Model

    return "cache" not in inspect.signature(GPT2Model.forward).parameters


class XttsVoiceEngine(CoquiVoiceEngine):
    name: ClassVar[str] = "coqui-xtts-v2"
    # Coqui Public Model License 1.0.0: non-commercial use of the model and its outputs.
    licence: ClassVar[str] = "cpml"
    model_type: ClassVar[str] = "xtts"

    def _load(self, tts: Any, folder: Path, config: Any) -> Any:
        from TTS.tts.models.xtts import Xtts

        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True)
        if model.speaker_manager is None:
            raise FileNotFoundError("speakers_xtts.pth (the studio speakers) is missing")
        self._generate = {} if _gpt2_kv_cache_works() else {"use_cache": False}
        return model

    def language_for(self, voice: Voice) -> str | None:
        base = voice.language.split("-")[0]
        for code in (voice.language, "zh-cn" if base == "zh" else base):
            if code in self.config.languages:
                return code
        raise UnsupportedRequest(f"{self.name} does not speak {voice.language!r}")

    def _say(self, text: str, speaker: str | None, language: str | None) -> np.ndarray:
        return self.model.synthesize(text, speaker=speaker, language=language, **self._generate)[
            "wav"
        ]

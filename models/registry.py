"""Which engines exist, what each is licensed under, which are the CPU defaults, and how to
build one: the one list of engine names (settings, job inputs and Serve configs name engines
from it).

The table is static so that the API can route by licence without importing torch; a test checks
it against each engine class's own `licence` ClassVar.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cluster.settings import ConfigError, Settings
from models.base import Engine
from models.errors import ModelUnavailable


class Capability(StrEnum):
    video = "video"
    image = "image"
    voice = "voice"
    lipsync = "lipsync"
    music = "music"


@dataclass(frozen=True)
class EngineInfo:
    capability: Capability
    name: str
    import_path: str
    licence: str
    gpu: bool
    model_folder: str | None = None

    @property
    def deployment(self) -> str:
        """The Serve application (and deployment) name that hosts this engine."""
        return f"{self.capability}-{self.name}"

    def load_class(self) -> type[Engine]:
        module, _, attribute = self.import_path.partition(":")
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo(Capability.video, "animatic", "models.animatic:AnimaticVideoEngine", "MIT", False),
    EngineInfo(
        Capability.video, "ltx", "models.neural.ltx:LtxVideoEngine", "ltxv-open-weights", True,
        "ltx-video",
    ),
    EngineInfo(
        Capability.video, "cogvideox", "models.neural.cogvideox:CogVideoXEngine",
        "cogvideox-license", True, "cogvideox",
    ),
    EngineInfo(
        Capability.video, "cogvideox-2b", "models.neural.cogvideox:CogVideoX2bEngine",
        "apache-2.0", True, "cogvideox-2b",
    ),
    EngineInfo(
        Capability.video, "svd", "models.neural.svd:StableVideoDiffusionEngine",
        "stability-community", True, "svd",
    ),
    EngineInfo(Capability.image, "card", "models.cards:CardImageEngine", "MIT", False),
    EngineInfo(
        Capability.image, "diffusers", "models.neural.keyframes:DiffusersKeyframeEngine",
        "creativeml-openrail-m", True, "keyframes",
    ),
    EngineInfo(
        Capability.voice, "espeak", "models.espeak:EspeakVoiceEngine", "GPL-3.0-or-later", False,
    ),
    EngineInfo(
        Capability.voice, "coqui-vits", "models.neural.coqui:VitsVoiceEngine", "apache-2.0", True,
        "vits",
    ),
    EngineInfo(
        Capability.voice, "coqui-xtts", "models.neural.coqui:XttsVoiceEngine", "cpml", True,
        "xtts",
    ),
    EngineInfo(
        Capability.voice, "openai", "models.neural.http_voices:OpenAIVoiceEngine",
        "openai-usage-policy", False,
    ),
    EngineInfo(
        Capability.voice, "elevenlabs", "models.neural.http_voices:ElevenLabsVoiceEngine",
        "elevenlabs-terms", False,
    ),
    EngineInfo(
        Capability.lipsync, "mouth", "models.mouth:MouthLipSyncEngine", "BSD-3-Clause", False,
    ),
    EngineInfo(
        Capability.lipsync, "wav2lip", "models.neural.wav2lip:Wav2LipEngine",
        "wav2lip-noncommercial", True, "wav2lip",
    ),
    EngineInfo(Capability.music, "midi", "models.music:MidiMusicEngine", "MIT", False),
)  # fmt: skip

CPU_DEFAULTS: dict[Capability, str] = {
    # The engines of an animatic, and of a final render whose engine is not configured.
    Capability.video: "animatic",
    Capability.image: "card",
    Capability.voice: "espeak",
    Capability.lipsync: "mouth",
    Capability.music: "midi",
}


def engine_info(capability: Capability | str, name: str) -> EngineInfo:
    for info in ENGINES:
        if info.capability == capability and info.name == name:
            return info
    raise KeyError(f"no {capability} engine named {name!r}")


def engine_names(capability: Capability) -> list[str]:
    return [info.name for info in ENGINES if info.capability == capability]


def configured_engines(settings: Settings) -> dict[Capability, str]:
    """The engine per capability for final renders: `STUDIO_<CAPABILITY>_ENGINE`, or the
    capability's CPU default when unset. Start-up checks it (`cluster.preflight`): an unknown
    name is a ConfigError naming the setting and the engines it may name."""
    chosen = {}
    for capability in Capability:
        name = getattr(settings, f"{capability.value}_engine") or CPU_DEFAULTS[capability]
        names = engine_names(capability)
        if name not in names:
            raise ConfigError(
                f"STUDIO_{capability.value.upper()}_ENGINE",
                f"no {capability} engine named {name!r}; the {capability} engines are "
                + ", ".join(names),
            )
        chosen[capability] = name
    return chosen


def build_engine(info: EngineInfo, models_dir: Path, options: dict[str, Any]) -> Any:
    """An engine instance: neural engines get their model folder under `models_dir`, the others
    only the options (API keys, base URLs) given for them. A missing model folder fails before
    the engine's libraries (torch, diffusers) are imported."""
    engine_class: Callable[..., Any] = info.load_class()  # each class has its own constructor
    if info.model_folder is None:
        return engine_class(**options)
    folder = models_dir / info.model_folder
    if not folder.exists():
        raise ModelUnavailable(f"model folder {folder} does not exist")
    return engine_class(folder, **options)

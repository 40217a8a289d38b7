"""Which engines exist, what each is licensed under, which are the CPU defaults, and how to
build one: the one list of engine names (settings, job inputs and Serve configs name engines
from it).

The table is static so that the API can route by licence without importing torch; a test checks
it against each engine class's own `licence` ClassVar. `LICENCES` says what each licence lets the
studio do with what the engine makes (commercial use, up to a revenue cap, or none), so that a
render can pick, per capability, the first engine a user's plan may use.
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


class Use(StrEnum):
    """What a licence allows the studio to do with an engine's output."""

    commercial = "commercial"
    revenue_cap = "revenue-cap"
    non_commercial = "non-commercial"


@dataclass(frozen=True)
class LicenceTerms:
    use: Use
    summary: str
    revenue_cap_usd: int | None = None


LICENCES: dict[str, LicenceTerms] = {
    "MIT": LicenceTerms(Use.commercial, "MIT"),
    "BSD-3-Clause": LicenceTerms(Use.commercial, "BSD 3-clause"),
    "GPL-3.0-or-later": LicenceTerms(
        Use.commercial, "GPL 3 (espeak-ng): the program's licence, not the audio's"
    ),
    "apache-2.0": LicenceTerms(Use.commercial, "Apache 2.0"),
    "mpl-2.0": LicenceTerms(Use.commercial, "MPL 2.0"),
    "creativeml-openrail-m": LicenceTerms(
        Use.commercial, "CreativeML OpenRAIL-M: commercial use with use restrictions"
    ),
    "openai-usage-policy": LicenceTerms(
        Use.commercial, "OpenAI terms: output owned by the customer, disclosed as AI voice"
    ),
    "elevenlabs-terms": LicenceTerms(
        Use.commercial, "ElevenLabs terms: commercial use on paid subscriptions"
    ),
    "runway-terms": LicenceTerms(
        Use.commercial, "Runway terms: the customer owns outputs; commercial use on paid plans"
    ),
    "luma-terms": LicenceTerms(
        Use.commercial, "Luma AI API terms: the customer owns outputs; commercial use on paid plans"
    ),
    "ltx-2-community": LicenceTerms(
        Use.revenue_cap,
        "LTX-2 Community License: commercial use by entities under USD 10M annual revenue",
        10_000_000,
    ),
    "stability-community": LicenceTerms(
        Use.revenue_cap,
        "Stability AI Community License: commercial use under USD 1M annual revenue",
        1_000_000,
    ),
    "ltxv-open-weights": LicenceTerms(
        Use.non_commercial, "LTX-Video 0.9 open weights licence: treated as non-commercial"
    ),
    "cogvideox-license": LicenceTerms(
        Use.non_commercial, "CogVideoX licence: commercial use only after registration"
    ),
    "wav2lip-noncommercial": LicenceTerms(Use.non_commercial, "Wav2Lip: research use only"),
    "fomm-noncommercial": LicenceTerms(
        Use.non_commercial,
        "First Order Motion Model checkpoints: research datasets, non-commercial",
    ),
    "cpml": LicenceTerms(Use.non_commercial, "Coqui Public Model License: non-commercial"),
}


@dataclass(frozen=True)
class EngineInfo:
    """`takes_image`: the engine starts a shot from a scene's image (a video engine that does
    not is never chosen for a scene with one). `takes_motion`: a lip-sync engine that moves a
    talking character by a driving video (character animation), the one chosen for the scenes
    that give one. `image_folder`: a second model folder holding the
    engine's image-to-video pipeline, when its weights are separate. `makes_sound`: a video
    engine whose clips come with a sound of their own (`SoundFrames`). `realistic`: the engine
    makes realistic synthetic media (neural video, lip-sync on a face; a cloned voice, though no
    voice engine here clones one: XTTS speaks as its preset studio speakers), which YouTube asks
    creators to label when they publish (`containsSyntheticMedia`)."""

    capability: Capability
    name: str
    import_path: str
    licence: str
    gpu: bool
    model_folder: str | None = None
    takes_image: bool = False
    takes_motion: bool = False
    image_folder: str | None = None
    makes_sound: bool = False
    realistic: bool = False

    @property
    def terms(self) -> LicenceTerms:
        return LICENCES[self.licence]

    @property
    def deployment(self) -> str:
        """The Serve application (and deployment) name that hosts this engine."""
        return f"{self.capability}-{self.name}"

    def load_class(self) -> type[Engine]:
        module, _, attribute = self.import_path.partition(":")
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo(
        Capability.video, "animatic", "models.animatic:AnimaticVideoEngine", "MIT", False,
        takes_image=True,
    ),
    EngineInfo(
        Capability.video, "wan", "models.neural.wan:WanVideoEngine", "apache-2.0", True, "wan",
        takes_image=True, image_folder="wan-i2v", realistic=True,
    ),
    EngineInfo(
        Capability.video, "ltx-2", "models.neural.ltx2:Ltx2VideoEngine", "ltx-2-community",
        True, "ltx-2", takes_image=True, makes_sound=True, realistic=True,
    ),
    EngineInfo(
        Capability.video, "ltx", "models.neural.ltx:LtxVideoEngine", "ltxv-open-weights", True,
        "ltx-video", takes_image=True, realistic=True,
    ),
    EngineInfo(
        Capability.video, "cogvideox", "models.neural.cogvideox:CogVideoXEngine",
        "cogvideox-license", True, "cogvideox", takes_image=True, image_folder="cogvideox-i2v",
        realistic=True,
    ),
    EngineInfo(
        Capability.video, "cogvideox-2b", "models.neural.cogvideox:CogVideoX2bEngine",
        "apache-2.0", True, "cogvideox-2b", realistic=True,
    ),
    EngineInfo(
        Capability.video, "svd", "models.neural.svd:StableVideoDiffusionEngine",
        "stability-community", True, "svd", takes_image=True, realistic=True,
    ),
    EngineInfo(
        Capability.video, "runway", "models.neural.hosted_video:RunwayVideoEngine",
        "runway-terms", False, takes_image=True, realistic=True,
    ),
    EngineInfo(
        Capability.video, "luma", "models.neural.hosted_video:LumaVideoEngine", "luma-terms",
        False, realistic=True,
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
        Capability.voice, "kokoro", "models.neural.kokoro:KokoroVoiceEngine", "apache-2.0", True,
        "kokoro",
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
        Capability.lipsync, "musetalk", "models.neural.musetalk:MuseTalkEngine", "MIT", True,
        "musetalk", realistic=True,
    ),
    EngineInfo(
        Capability.lipsync, "wav2lip", "models.neural.wav2lip:Wav2LipEngine",
        "wav2lip-noncommercial", True, "wav2lip", realistic=True,
    ),
    EngineInfo(
        Capability.lipsync, "fomm", "models.neural.fomm:FommEngine", "fomm-noncommercial", True,
        "fomm", takes_motion=True, realistic=True,
    ),
    EngineInfo(Capability.music, "midi", "models.music:MidiMusicEngine", "MIT", False),
    EngineInfo(
        Capability.music, "stable-audio", "models.neural.stable_audio:StableAudioMusicEngine",
        "stability-community", True, "stable-audio",
    ),
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


def choice_capability(field: str) -> Capability:
    """The capability of a field of a render's engine choice (`pipeline.render.dag.EngineChoice`):
    its own, or the one its alternate for some scenes stands in for (`image_video`: the video of
    scenes from a picture; `motion_lipsync`: the character animation of scenes with a driving
    video)."""
    alternates = {"image_video": Capability.video, "motion_lipsync": Capability.lipsync}
    return alternates.get(field) or Capability(field)


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
    """An engine instance: neural engines get their model folder under `models_dir` (and their
    image-to-video folder, when present), the others only the options (API keys, base URLs)
    given for them. A missing model folder fails before the engine's libraries (torch,
    diffusers) are imported."""
    engine_class: Callable[..., Any] = info.load_class()  # each class has its own constructor
    if info.model_folder is None:
        return engine_class(**options)
    folder = models_dir / info.model_folder
    if not folder.exists():
        raise ModelUnavailable(f"model folder {folder} does not exist")
    if info.image_folder is not None and (models_dir / info.image_folder).exists():
        options = {"image_model_dir": models_dir / info.image_folder, **options}
    return engine_class(folder, **options)

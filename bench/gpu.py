"""GPU benchmark of the neural engines, on real-size architectures with random weights.

    python bench/gpu.py            # full: real step counts and shot lengths
    python bench/gpu.py --quick    # few steps, short shots: a few minutes on one H100
    python bench/gpu.py --smoke    # the tiny test models on any machine: checks the harness only

For each video model it builds the published architecture (LTX-Video 0.9 2B, CogVideoX-2b) with
random weights, saves it as a diffusers folder, loads it through our engine class, and times in
the same process, on the same pipeline object and GPU:
  - clips/min through `engine.generate` (plan, prompt, pipeline, uint8, fit to the request),
  - clips/min of the raw diffusers pipeline called in a loop with the same native shot,
  - clips/min after `torch.compile` of the denoiser (the compile run itself is not timed).
The T5 text encoders keep T5-XXL's width (4096) but only 2 layers: encoding the prompt once
per clip is not what is measured here, and 4.7 B random parameters would take minutes to build.
Voices print the real-time factor (synthesis seconds per second of speech) of XTTS v2 and VCTK-
size VITS; Wav2Lip prints frames/s through the engine (detection, crops, paste) against the raw
network on batches of the same size. Random weights decide nothing here but speed: XTTS' random
GPT rarely stops early, so its clips run to the maximum length.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.base import Audio, Frames, VideoRequest, Voice, VoiceRequest
from models.neural.device import compile_module, seeded_generator
from tests.tiny_models import BUILDERS, build_vits, build_wav2lip, build_xtts, t5_tokenizer

LTX_SCHEDULER = {
    "base_image_seq_len": 1024,
    "base_shift": 0.95,
    "max_image_seq_len": 4096,
    "max_shift": 2.05,
    "shift_terminal": 0.1,
    "use_dynamic_shifting": True,
}
COGVIDEOX_SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "clip_sample": False,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "snr_shift_scale": 3.0,
    "timestep_spacing": "trailing",
}


@dataclass(frozen=True)
class Plan:
    """What one run measures: step counts, shot length, repetitions."""

    ltx_steps: int
    cogvideox_steps: int
    duration_s: float
    repeats: int
    text: str
    lip_frames: int


FULL = Plan(40, 50, 5.0, 3, "The river remembers every stone it has ever carried. " * 3, 250)
QUICK = Plan(4, 4, 2.0, 2, "The river remembers every stone it has carried.", 75)
SMOKE = Plan(2, 2, 1.0, 1, "Hello there.", 6)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `run` after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(label: str, value: float, unit: str) -> None:
    print(f"  {label:<44} {value:10.3f} {unit}", flush=True)


def xxl_width_t5(tokenizer: Any) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64
    )
    return T5EncoderModel(config)


def build_ltx_real(out: Path) -> None:
    """LTX-Video 0.9 (2B): the diffusers defaults of its transformer and VAE are that model."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    tokenizer = t5_tokenizer()
    pipe: Any = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER),
        vae=AutoencoderKLLTXVideo(),
        text_encoder=xxl_width_t5(tokenizer),
        tokenizer=tokenizer,
        transformer=LTXVideoTransformer3DModel(),
    )
    pipe.to(dtype=torch.bfloat16).save_pretrained(out)


def build_cogvideox_real(out: Path) -> None:
    """CogVideoX-2b: 30 layers of 30 heads x 64, sincos positions, 720x480x49."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    tokenizer = t5_tokenizer()
    pipe: Any = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=xxl_width_t5(tokenizer),
        vae=AutoencoderKLCogVideoX(scaling_factor=1.15258426),
        transformer=CogVideoXTransformer3DModel(
            num_attention_heads=30, attention_head_dim=64, num_layers=30
        ),
        scheduler=CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER),
    )
    pipe.to(dtype=torch.bfloat16).save_pretrained(out)


def build_xtts_real(out: Path) -> None:
    """XTTS v2: GPT-2 of 30 layers x 1024 with the perceiver resampler, 1026 audio codes."""
    from TTS.tts.configs.xtts_config import XttsArgs

    args = XttsArgs(
        gpt_num_audio_tokens=1026,
        gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025,
        gpt_use_perceiver_resampler=True,
    )
    build_xtts(out, args)


def build_vits_real(out: Path) -> None:
    """VITS at the size of Coqui's VCTK model (hidden 192, 6 text-encoder layers)."""
    from TTS.tts.configs.vits_config import VitsArgs

    build_vits(out, VitsArgs(speaker_embedding_channels=256))


def video_request(duration_s: float) -> VideoRequest:
    return VideoRequest(
        prompt="a fox trots through fresh snow at dawn",
        width=1280,
        height=720,
        fps=24,
        duration_s=duration_s,
        seed=1,
    )


def bench_video(name: str, folder: Path, plan: Plan, smoke: bool) -> None:
    from models.neural.cogvideox import CogVideoX2bEngine
    from models.neural.ltx import LtxVideoEngine

    request = video_request(plan.duration_s)
    if name == "ltx":
        extra: dict[str, Any] = {"base_size": (64, 32), "max_frames": 9} if smoke else {}
        engine: Any = LtxVideoEngine(folder, steps=plan.ltx_steps, **extra)
    else:
        engine = CogVideoX2bEngine(folder, steps=plan.cogvideox_steps)
    shot = engine.plan(request)
    print(
        f"{name}: native {shot.width}x{shot.height}x{shot.frames}, {engine.steps} steps", flush=True
    )

    def raw() -> Any:
        """The pipeline as its model card calls it, with the same native shot."""
        common = {
            "width": shot.width,
            "height": shot.height,
            "num_frames": shot.frames,
            "num_inference_steps": engine.steps,
            "generator": seeded_generator(request.seed),
            "output_type": "np",
        }
        if name == "ltx":
            return engine.pipe(prompt=request.prompt, frame_rate=round(shot.fps), **common)
        max_text = engine.pipe.transformer.config.max_text_seq_length
        return engine.pipe(prompt=request.prompt, max_sequence_length=max_text, **common)

    through_engine = seconds(lambda: engine.generate(request), plan.repeats)
    direct = seconds(raw, plan.repeats)
    report("clips/min through the engine", 60 / through_engine, "")
    report("clips/min of the raw pipeline", 60 / direct, "")
    report("engine / raw throughput", direct / through_engine, "x")
    if not smoke:
        compile_module(engine.pipe.transformer)
        compiled = seconds(lambda: engine.generate(request), plan.repeats)
        report("clips/min through the engine, compiled", 60 / compiled, "")
        report("torch.compile gain", through_engine / compiled, "x")


def bench_voice(name: str, folder: Path, plan: Plan) -> None:
    from models.neural.coqui import CoquiVoiceEngine

    engine = CoquiVoiceEngine.open(folder)
    request = VoiceRequest(text=plan.text, voice=Voice(), seed=1)
    audio = engine.synthesize(request)
    took = seconds(lambda: engine.synthesize(request), plan.repeats)
    print(f"{name}: {audio.duration_s:.2f} s of speech at {audio.sample_rate} Hz", flush=True)
    report("real-time factor (synthesis s / speech s)", took / audio.duration_s, "")
    report("speech seconds per second", audio.duration_s / took, "")


def bench_wav2lip(folder: Path, plan: Plan) -> None:
    from skimage import data

    from models.neural.wav2lip import FACE_SIZE, Wav2LipEngine

    engine = Wav2LipEngine(folder, batch_size=128)
    frames = Frames(np.repeat(data.astronaut()[None], plan.lip_frames, axis=0), fps=25)
    rate = 16000
    t = np.arange(int(plan.lip_frames / 25 * rate)) / rate
    audio = Audio((0.4 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate)
    device, dtype = engine.runtime.device, engine.runtime.dtype
    mels = torch.randn(min(128, plan.lip_frames), 1, 80, 16, device=device, dtype=dtype)
    faces = torch.rand(len(mels), 6, FACE_SIZE, FACE_SIZE, device=device, dtype=dtype)

    def raw() -> None:
        with torch.inference_mode():
            for _ in range(0, plan.lip_frames, len(mels)):
                engine.model(mels, faces)

    through_engine = seconds(lambda: engine.sync(frames, audio), plan.repeats)
    direct = seconds(raw, plan.repeats)
    print(f"wav2lip: {plan.lip_frames} frames of 512x512", flush=True)
    report("frames/s through the engine", plan.lip_frames / through_engine, "")
    report("frames/s of the raw network", plan.lip_frames / direct, "")
    report("engine / raw throughput", direct / through_engine, "x")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few steps, short shots")
    mode.add_argument("--smoke", action="store_true", help="tiny models: check the harness")
    parser.add_argument(
        "--only",
        default="ltx,cogvideox,xtts,vits,wav2lip",
        help="comma-separated subset of ltx,cogvideox,xtts,vits,wav2lip",
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke to check the harness on the CPU")
    print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    builders: dict[str, Callable[[Path], None]] = {
        "ltx": BUILDERS["ltx-video"] if args.smoke else build_ltx_real,
        "cogvideox": BUILDERS["cogvideox"] if args.smoke else build_cogvideox_real,
        "xtts": BUILDERS["xtts"] if args.smoke else build_xtts_real,
        "vits": BUILDERS["vits"] if args.smoke else build_vits_real,
        "wav2lip": build_wav2lip,
    }
    # Random weights are drawn on the GPU: on the CPU the 2B models take minutes to initialise.
    build_on = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as scratch:
        for name in args.only.split(","):
            folder = Path(scratch) / name
            started = time.perf_counter()
            torch.manual_seed(0)
            with build_on:
                builders[name](folder)
            print(f"built {name} in {time.perf_counter() - started:.0f} s", flush=True)
            if name in ("ltx", "cogvideox"):
                bench_video(name, folder, plan, args.smoke)
            elif name in ("xtts", "vits"):
                bench_voice(name, folder, plan)
            else:
                bench_wav2lip(folder, plan)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:])

"""GPU benchmark of the neural engines, on real-size architectures with random weights.

    python bench/gpu.py            # full: real step counts and shot lengths
    python bench/gpu.py --quick    # few steps, short shots: a few minutes on one H100
    python bench/gpu.py --smoke    # the tiny test models on any machine: checks the harness only

For each video model it builds the published architecture (Wan 2.2 TI2V-5B, LTX-2 19B, LTX-Video
0.9 2B, CogVideoX-2b) with random weights, saves it as a diffusers folder, loads it through our
engine class, and times in the same process, on the same pipeline object and GPU:
  - clips/min through `engine.generate` (plan, prompt, pipeline, uint8, fit to the request),
  - clips/min of the raw diffusers pipeline with the same native shot, guidance and negative
    prompt, timed in alternation with the engine (medians), so that load weighs on both alike,
  - for Wan and LTX-2, the same two for a scene with an image (their image-to-video pipeline),
  - clips/min after `torch.compile` of the denoiser (the compile run itself is not timed),
  - the peak GPU memory of the engine's runs.
The text encoders keep their real width (T5/UMT5-XXL 4096, Gemma 3 12B 3840) but only 2
layers: encoding the prompt once per clip is not what is measured here, and billions of random
parameters would take minutes to build. Each model's folder is deleted after its run.
Voices print the real-time factor (synthesis seconds per second of speech) of XTTS v2 and VCTK-
size VITS; Stable Audio Open 1.0 (its 1.1B DiT and Oobleck autoencoder, T5-base width) prints
seconds of music per second through `engine.compose` against the raw pipeline on one piece;
Wav2Lip and MuseTalk print frames/s through the engine (detection, crops, paste; MuseTalk's
audio features and encoding too) against the raw network on batches of the same size (MuseTalk:
its UNet and the autoencoder's decoder, what each frame costs once a still face is encoded).
Random weights decide nothing here but speed: XTTS' random GPT rarely stops early, so its clips
run to the maximum length.
"""

from __future__ import annotations

import argparse
import gc
import io
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from models.base import Audio, Frames, VideoRequest, Voice, VoiceRequest
from models.neural import ltx, ltx2, wan
from models.neural.device import compile_module, seeded_generator
from models.neural.diffusion import start_image
from models.registry import build_engine, engine_info
from tests.tiny_models import (
    BUILDERS,
    build_vits,
    build_wav2lip,
    build_xtts,
    t5_tokenizer,
    tiny_gemma3_tokenizer,
    write_musetalk,
)

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
    wan_steps: int
    ltx2_steps: int
    duration_s: float
    repeats: int
    text: str
    lip_frames: int
    music_steps: int
    music_s: float


FULL = Plan(
    40, 50, 40, 40, 5.0, 3, "The river remembers every stone it has ever carried. " * 3, 250,
    100, 47.0,
)  # fmt: skip
QUICK = Plan(4, 4, 4, 4, 2.0, 2, "The river remembers every stone it has carried.", 75, 8, 20.0)
SMOKE = Plan(2, 2, 2, 2, 1.0, 7, "Hello there.", 6, 2, 1.5)
"""Tiny models run in tens of milliseconds, so the smoke run takes the median of 7 runs."""
# Engine options per video model: steps from the plan; the tiny models' sizes when smoking.
TINY_SHOTS: dict[str, dict[str, Any]] = {
    "ltx": {"base_size": (64, 32), "max_frames": 9},
    "cogvideox": {},
    "wan": {"base_size": (64, 32), "max_frames": 9},
    "ltx-2": {"base_size": (64, 32), "max_frames": 9, "stg_blocks": None},
}
NEGATIVE_PROMPTS = {
    "wan": wan.NEGATIVE_PROMPT,
    "ltx": ltx.NEGATIVE_PROMPT,
    "ltx-2": ltx2.NEGATIVE_PROMPT,
}
ENGINE_NAMES = {"ltx": "ltx", "cogvideox": "cogvideox-2b", "wan": "wan", "ltx-2": "ltx-2"}
# The registry's model folder of each benchmarked model.
FOLDERS = {"ltx": "ltx-video", "cogvideox": "cogvideox-2b"}


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


def paired_seconds(
    engine: Callable[[], object], raw: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median wall times of the engine's call and the raw one, timed in alternation after a
    warm-up of each, so that a change in the machine's load weighs on both alike."""
    engine()
    raw()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, taken in zip((engine, raw), times, strict=True):
            synchronize()
            started = time.perf_counter()
            run()
            synchronize()
            taken.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


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


def build_wan_real(out: Path) -> None:
    """Wan 2.2 TI2V-5B: one checkpoint for text- and image-to-video (`expand_timesteps`), 30
    layers of 24 heads x 128, and the Wan 2.2 VAE (48 latent channels, 16x spatial)."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=10240, num_layers=2,
                   num_heads=64)
    )  # fmt: skip
    vae = AutoencoderKLWan(
        base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
        out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
        latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
    )  # fmt: skip
    transformer = WanTransformer3DModel(
        num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
        ffn_dim=14336, num_layers=30,
    )  # fmt: skip
    pipe: Any = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=transformer,
        expand_timesteps=True,
    )
    pipe.to(dtype=torch.bfloat16).save_pretrained(out)


def build_ltx2_real(out: Path) -> None:
    """LTX-2 19B: the diffusers defaults of its transformer, video and audio VAEs, vocoder and
    connectors are that model; Gemma 3 12B's width with 2 layers."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    tokenizer = tiny_gemma3_tokenizer()
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=3840, intermediate_size=15360,
        num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
    )  # fmt: skip
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=28, patch_size=14,
    )  # fmt: skip
    config = Gemma3Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
        boi_token_index=len(tokenizer), eoi_token_index=len(tokenizer) + 1,
        image_token_index=len(tokenizer) + 2,
    )  # fmt: skip
    pipe: Any = LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKLLTX2Video(),
        audio_vae=AutoencoderKLLTX2Audio(),
        text_encoder=Gemma3ForConditionalGeneration(config),
        tokenizer=tokenizer,
        connectors=LTX2TextConnectors(text_proj_in_factor=text.num_hidden_layers + 1),
        transformer=LTX2VideoTransformer3DModel(),
        vocoder=LTX2Vocoder(),
    )
    pipe.to(dtype=torch.bfloat16).save_pretrained(out)


def build_stable_audio_real(out: Path) -> None:
    """Stable Audio Open 1.0: diffusers' defaults are its DiT (1024 latent frames, 24 layers)
    and Oobleck autoencoder (44.1 kHz, hop 2048); T5-base width with 2 layers."""
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    tokenizer.model_max_length = 128
    config = T5Config(
        vocab_size=len(tokenizer), d_model=768, d_kv=64, d_ff=3072, num_layers=2, num_heads=12
    )
    pipe: Any = StableAudioPipeline(
        vae=AutoencoderOobleck(),
        text_encoder=T5EncoderModel(config),
        projection_model=StableAudioProjectionModel(768, 768, 0, 512),
        tokenizer=tokenizer,
        transformer=StableAudioDiTModel(),
        scheduler=CosineDPMSolverMultistepScheduler(),
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


# musetalkV15/musetalk.json as TMElyralab/MuseTalk publishes it.
MUSETALK_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
    "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
}  # fmt: skip


def build_musetalk_real(out: Path) -> None:
    """MuseTalk 1.5: its UNet (0.85B), sd-vae-ft-mse (the SD autoencoder) and whisper-tiny
    (transformers' WhisperConfig defaults are that model)."""
    from diffusers import AutoencoderKL
    from transformers import WhisperConfig

    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        sample_size=256,
    )
    write_musetalk(out, MUSETALK_UNET, vae, WhisperConfig())


def build_vits_real(out: Path) -> None:
    """VITS at the size of Coqui's VCTK model (hidden 192, 6 text-encoder layers)."""
    from TTS.tts.configs.vits_config import VitsArgs

    build_vits(out, VitsArgs(speaker_embedding_channels=256))


def picture_png() -> bytes:
    """A scene's image for the image-to-video runs."""
    y, x = np.mgrid[0:720, 0:1280]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def video_request(duration_s: float, image: bytes | None = None) -> VideoRequest:
    return VideoRequest(
        prompt="a fox trots through fresh snow at dawn",
        width=1280,
        height=720,
        fps=24,
        duration_s=duration_s,
        keyframe_png=image,
        seed=1,
    )


def steps_of(name: str, plan: Plan) -> int:
    return {"ltx": plan.ltx_steps, "cogvideox": plan.cogvideox_steps, "wan": plan.wan_steps,
            "ltx-2": plan.ltx2_steps}[name]  # fmt: skip


def raw_call(name: str, engine: Any, request: VideoRequest) -> Callable[[], Any]:
    """The pipeline as its model card calls it, with the engine's native shot: the
    image-to-video pipeline for a request with an image."""
    shot = engine.plan(request)
    pipe = engine.pipe if request.keyframe_png is None else engine.image_pipe
    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "width": shot.width,
        "height": shot.height,
        "num_frames": shot.frames,
        "num_inference_steps": engine.steps,
        "output_type": "np",
    }
    if request.keyframe_png is not None:
        kwargs["image"] = start_image(request, shot)
    # The engine's guidance and negative prompt, so that only the engine's own work differs.
    kwargs["guidance_scale"] = engine.guidance_scale
    if name in NEGATIVE_PROMPTS:
        kwargs["negative_prompt"] = NEGATIVE_PROMPTS[name]
    if name == "cogvideox":
        kwargs["use_dynamic_cfg"] = engine.pipe.transformer.config.use_rotary_positional_embeddings
    if name in ("ltx", "ltx-2"):
        kwargs["frame_rate"] = round(shot.fps) if name == "ltx" else shot.fps
    if name == "ltx-2" and engine.stg_blocks is None:
        kwargs |= {"stg_scale": 0.0, "audio_stg_scale": 0.0}
        kwargs["spatio_temporal_guidance_blocks"] = None
    if name == "cogvideox":
        kwargs["max_sequence_length"] = engine.pipe.transformer.config.max_text_seq_length

    def run() -> Any:
        return pipe(generator=seeded_generator(request.seed), **kwargs)

    return run


def bench_video(name: str, models: Path, plan: Plan, smoke: bool) -> None:
    info = engine_info("video", ENGINE_NAMES[name])
    options = {"steps": steps_of(name, plan), **(TINY_SHOTS[name] if smoke else {})}
    engine: Any = build_engine(info, models, options)
    requests = {"text": video_request(plan.duration_s)}
    if info.takes_image and name in ("wan", "ltx-2"):
        requests["image"] = video_request(plan.duration_s, picture_png())
    reset_peak()
    for kind, request in requests.items():
        shot = engine.plan(request)
        print(f"{name} ({kind} to video): native {shot.width}x{shot.height}x{shot.frames},"
              f" {engine.steps} steps", flush=True)  # fmt: skip
        through_engine, direct = paired_seconds(
            partial(engine.generate, request), raw_call(name, engine, request), plan.repeats
        )
        report("clips/min through the engine", 60 / through_engine, "")
        report("clips/min of the raw pipeline", 60 / direct, "")
        report("engine / raw throughput", direct / through_engine, "x")
    report_peak(name)
    if not smoke:
        request = requests["text"]
        through_engine = seconds(lambda: engine.generate(request), plan.repeats)
        compile_module(engine.pipe.transformer)
        compiled = seconds(lambda: engine.generate(request), plan.repeats)
        report("clips/min through the engine, compiled", 60 / compiled, "")
        report("torch.compile gain", through_engine / compiled, "x")


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def report_peak(name: str) -> None:
    if torch.cuda.is_available():
        report(f"{name}: peak GPU memory", torch.cuda.max_memory_allocated() / 2**30, "GiB")


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

    through_engine, direct = paired_seconds(lambda: engine.sync(frames, audio), raw, plan.repeats)
    print(f"wav2lip: {plan.lip_frames} frames of 512x512", flush=True)
    report("frames/s through the engine", plan.lip_frames / through_engine, "")
    report("frames/s of the raw network", plan.lip_frames / direct, "")
    report("engine / raw throughput", direct / through_engine, "x")


def bench_musetalk(folder: Path, plan: Plan) -> None:
    from skimage import data

    from models.neural.musetalk import FACE_SIZE, WINDOW, MuseTalkEngine

    engine = MuseTalkEngine(folder, batch_size=32)
    frames = Frames(np.repeat(data.astronaut()[None], plan.lip_frames, axis=0), fps=25)
    rate = 16000
    t = np.arange(int(plan.lip_frames / 25 * rate)) / rate
    audio = Audio((0.4 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate)
    device, dtype = engine.runtime.device, engine.runtime.dtype
    batch = min(engine.batch_size, plan.lip_frames)
    latent = FACE_SIZE // 8
    latents = torch.randn(batch, 8, latent, latent, device=device, dtype=dtype)
    width = engine.whisper.config.d_model
    layers = engine.whisper.config.encoder_layers + 1
    prompts = torch.randn(batch, WINDOW * layers, width, device=device, dtype=dtype)
    step = torch.zeros(1, device=device)

    def raw() -> None:
        with torch.inference_mode():
            for _ in range(0, plan.lip_frames, batch):
                made = engine.unet(latents, step, encoder_hidden_states=prompts).sample
                engine.vae.decode(made / engine.scale)

    reset_peak()
    through_engine, direct = paired_seconds(lambda: engine.sync(frames, audio), raw, plan.repeats)
    print(f"musetalk: {plan.lip_frames} frames of 512x512, batches of {batch}", flush=True)
    report("frames/s through the engine", plan.lip_frames / through_engine, "")
    report("frames/s of the raw UNet + decoder", plan.lip_frames / direct, "")
    report("engine / raw throughput", direct / through_engine, "x")
    report_peak("musetalk")


def bench_music(folder: Path, plan: Plan) -> None:
    from models.base import Mood, MusicRequest
    from models.neural.stable_audio import NEGATIVE_PROMPT, StableAudioMusicEngine, music_prompt

    engine = StableAudioMusicEngine(folder, steps=plan.music_steps)
    seconds_of_music = min(plan.music_s, engine.piece_s)
    request = MusicRequest(mood=Mood.epic, tempo_bpm=120, duration_s=seconds_of_music, seed=1)

    def raw() -> None:
        with torch.inference_mode():
            engine.pipe(
                prompt=music_prompt(request),
                negative_prompt=NEGATIVE_PROMPT,
                audio_end_in_s=seconds_of_music,
                num_inference_steps=plan.music_steps,
                guidance_scale=engine.guidance_scale,
                generator=seeded_generator(1),
                output_type="np",
            )

    reset_peak()
    through_engine, direct = paired_seconds(lambda: engine.compose(request), raw, plan.repeats)
    print(f"stable-audio: {seconds_of_music:.1f} s of music, {plan.music_steps} steps", flush=True)
    report("music seconds per second through the engine", seconds_of_music / through_engine, "")
    report("music seconds per second of the raw pipeline", seconds_of_music / direct, "")
    report("engine / raw throughput", direct / through_engine, "x")
    report_peak("stable-audio")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few steps, short shots")
    mode.add_argument("--smoke", action="store_true", help="tiny models: check the harness")
    parser.add_argument(
        "--only",
        default="wan,ltx-2,ltx,cogvideox,xtts,vits,wav2lip,musetalk,stable-audio",
        help="comma-separated subset of wan,ltx-2,ltx,cogvideox,xtts,vits,wav2lip,musetalk,"
        "stable-audio",
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke to check the harness on the CPU")
    print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    builders: dict[str, Callable[[Path], None]] = {
        "wan": BUILDERS["wan"] if args.smoke else build_wan_real,
        "ltx-2": BUILDERS["ltx-2"] if args.smoke else build_ltx2_real,
        "ltx": BUILDERS["ltx-video"] if args.smoke else build_ltx_real,
        "cogvideox": BUILDERS["cogvideox"] if args.smoke else build_cogvideox_real,
        "xtts": BUILDERS["xtts"] if args.smoke else build_xtts_real,
        "vits": BUILDERS["vits"] if args.smoke else build_vits_real,
        "wav2lip": build_wav2lip,
        "musetalk": BUILDERS["musetalk"] if args.smoke else build_musetalk_real,
        "stable-audio": BUILDERS["stable-audio"] if args.smoke else build_stable_audio_real,
    }
    # Random weights are drawn on the GPU: on the CPU the 2B models take minutes to initialise.
    build_on = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as scratch:
        for name in args.only.split(","):
            folder = Path(scratch) / FOLDERS.get(name, name)
            started = time.perf_counter()
            torch.manual_seed(0)
            with build_on:
                builders[name](folder)
                if args.smoke and name == "wan":
                    BUILDERS["wan-i2v"](Path(scratch) / "wan-i2v")
            print(f"built {name} in {time.perf_counter() - started:.0f} s", flush=True)
            if name in ENGINE_NAMES:
                bench_video(name, Path(scratch), plan, args.smoke)
            elif name in ("xtts", "vits"):
                bench_voice(name, folder, plan)
            elif name == "stable-audio":
                bench_music(folder, plan)
            elif name == "musetalk":
                bench_musetalk(folder, plan)
            else:
                bench_wav2lip(folder, plan)
            for built in Path(scratch).iterdir():
                shutil.rmtree(built)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:])

"""MuseTalk 1.5 lip-sync: latent-space inpainting of the lower face, conditioned on Whisper audio.

Zhang et al., "MuseTalk: Real-Time High Quality Lip Synchronization with Latent Space Inpainting"
(TMElyralab/MuseTalk, MIT code and weights). A 256x256 face crop and a copy with its lower half
masked are encoded by the sd-vae-ft-mse autoencoder; a diffusers UNet2DConditionModel takes the
two latents (8 channels) at timestep 0, with the Whisper-tiny encoder's hidden states around the
frame (plus a sinusoidal position encoding) as its cross-attention input, and predicts the face's
latent in one step, which the autoencoder decodes. The model folder is MuseTalk's `models/`
folder as its `download_weights.sh` lays it out; only the three parts inference needs are read:

    musetalkV15/musetalk.json, musetalkV15/unet.pth    the UNet's config and state dict
    sd-vae/config.json, diffusion_pytorch_model.bin    stabilityai/sd-vae-ft-mse
    whisper/config.json, pytorch_model.bin, preprocessor_config.json    openai/whisper-tiny
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from scipy import signal
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

from models.base import Audio, Frames, LipSyncResult
from models.errors import ModelUnavailable
from models.neural.device import RuntimeLike, compile_module, pick_runtime, runtime_options
from models.neural.faces import Box, FaceDetector, feather, track_faces
from models.neural.folders import resolve_model_dir

FACE_SIZE = 256
SAMPLE_RATE = 16000
AUDIO_STEPS = 50  # Whisper encoder steps per second of audio
CONTEXT = (2, 2)  # video frames of audio before and after each frame (MuseTalk's padding)
WINDOW = 2 * (CONTEXT[0] + CONTEXT[1] + 1)  # encoder steps per frame: 10

UNET_FILES = ("musetalk.json", "unet.pth")
VAE_FILES = ("config.json",)
WHISPER_FILES = ("config.json", "preprocessor_config.json")


def load_unet(folder: Path, dtype: torch.dtype) -> UNet2DConditionModel:
    """musetalk.json is a UNet2DConditionModel config, unet.pth its plain state dict (all of it:
    a missing or unexpected key fails). Built without weights, then given the checkpoint's."""
    config = json.loads((folder / "musetalk.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    state = torch.load(folder / "unet.pth", map_location="cpu", weights_only=True)
    unet.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    return unet


def load_parts(folder: Path, dtype: torch.dtype) -> tuple[Any, Any, Any, Any]:
    """The UNet, the autoencoder, the Whisper encoder and its feature extractor, in `dtype`; a
    missing file or one that does not load is ModelUnavailable naming it."""
    unet_dir = resolve_model_dir(folder / "musetalkV15", UNET_FILES)
    vae_dir = resolve_model_dir(folder / "sd-vae", VAE_FILES)
    whisper_dir = resolve_model_dir(folder / "whisper", WHISPER_FILES)
    try:
        unet: Any = load_unet(unet_dir, dtype)  # diffusers types its config dynamically
        vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=dtype)
        whisper = WhisperForConditionalGeneration.from_pretrained(whisper_dir, dtype=dtype)
        features = WhisperFeatureExtractor.from_pretrained(whisper_dir)
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load MuseTalk from {folder}: {type(error).__name__}: {error}"
        ) from error
    encoder = whisper.get_encoder()
    width = encoder.config.d_model
    if unet.config.cross_attention_dim != width or unet.config.in_channels != 2 * (
        vae.config.latent_channels
    ):
        raise ModelUnavailable(
            f"MuseTalk parts in {folder} do not fit: the UNet takes {unet.config.in_channels}"
            f" channels and {unet.config.cross_attention_dim}-wide audio, the autoencoder makes"
            f" {vae.config.latent_channels} channels and Whisper {width}-wide features"
        )
    return unet, vae, encoder, features


def positional_encoding(length: int, width: int) -> torch.Tensor:
    """MuseTalk's PositionalEncoding: sines on even, cosines on odd features, (length, width)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
    encoding = torch.zeros(length, width)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return encoding


def samples_16k(audio: Audio, seconds: float) -> np.ndarray:
    """The audio at 16 kHz, float32, padded with silence to at least `seconds`."""
    samples = audio.samples.astype(np.float64)
    if audio.sample_rate != SAMPLE_RATE:
        g = math.gcd(audio.sample_rate, SAMPLE_RATE)
        samples = signal.resample_poly(samples, SAMPLE_RATE // g, audio.sample_rate // g)
    samples = np.pad(samples, (0, max(0, math.ceil(seconds * SAMPLE_RATE) - len(samples))))
    return samples.astype(np.float32)


class MuseTalkEngine:
    """Lip-syncs the largest face of each frame to the audio, `batch_size` faces per UNet call;
    frames without a face pass through. Only the lower half of the face box changes."""

    name: ClassVar[str] = "musetalk"
    version: ClassVar[str] = "1"
    # TMElyralab/MuseTalk: MIT for the code and the released weights, commercial use included
    # (sd-vae-ft-mse is MIT too, Whisper MIT).
    licence: ClassVar[str] = "MIT"

    def __init__(
        self,
        folder: str | Path,
        *,
        runtime: RuntimeLike = None,
        batch_size: int = 16,
        detect_every: int = 5,
        smooth: int = 5,
    ) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ModelUnavailable(f"MuseTalk folder {path} does not exist")
        self.runtime = pick_runtime(runtime_options(runtime))
        device, dtype = self.runtime.device, self.runtime.dtype
        unet, vae, encoder, self.features = load_parts(path, dtype)
        self.unet = unet.to(device).eval()
        self.vae = vae.to(device).eval()
        self.whisper = encoder.to(device).eval()
        self.scale = float(vae.config.scaling_factor)
        layers = self.whisper.config.encoder_layers + 1  # the embeddings and each layer's output
        self.position = positional_encoding(WINDOW * layers, self.whisper.config.d_model).to(
            device, dtype
        )
        if self.runtime.compile:
            compile_module(self.unet)
        self.detector = FaceDetector()
        self.batch_size = batch_size
        self.detect_every = detect_every
        self.smooth = smooth

    def sync(self, frames: Frames, audio: Audio) -> LipSyncResult:
        pixels = frames.pixels
        if not self.detector.available:
            return LipSyncResult(frames, ["no face detector available: frames left unchanged"])
        boxes = track_faces(self.detector, pixels, self.detect_every, self.smooth)
        if not any(boxes):
            return LipSyncResult(frames, ["no face found: frames left unchanged"])
        prompts = self.audio_prompts(audio, len(pixels), frames.fps)
        out = pixels.copy()
        faces = [(i, box) for i, box in enumerate(boxes) if box is not None]
        for start in range(0, len(faces), self.batch_size):
            batch = faces[start : start + self.batch_size]
            for (i, box), face in zip(batch, self._faces(pixels, prompts, batch), strict=True):
                _paste(out[i], face, box)
        warnings = []
        if len(faces) < len(pixels):
            warnings.append(f"no face in {len(pixels) - len(faces)} of {len(pixels)} frames")
        return LipSyncResult(Frames(out, frames.fps), warnings)

    def audio_prompts(self, audio: Audio, frames: int, fps: float) -> torch.Tensor:
        """The UNet's cross-attention input per video frame, (frames, 10 * (layers + 1), width):
        every Whisper encoder hidden state over the 10 steps (0.2 s) around the frame, as MuseTalk's
        AudioProcessor cuts them, plus the position encoding; silence past the audio."""
        samples = samples_16k(audio, (frames + CONTEXT[1] + 1) / fps)
        chunk = self.features.n_samples  # 30 s: Whisper's fixed input
        segments = [samples[i : i + chunk] for i in range(0, len(samples), chunk)]
        mels = self.features(segments, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        device, dtype = self.runtime.device, self.runtime.dtype
        with torch.inference_mode():
            states = self.whisper(
                mels.input_features.to(device, dtype), output_hidden_states=True
            ).hidden_states
        steps = torch.stack(states, dim=2).flatten(0, 1)  # (segments * 1500, layers + 1, width)
        steps = steps[: math.floor(len(samples) / SAMPLE_RATE * AUDIO_STEPS)]
        # Zeros before the first step and after the last, as MuseTalk pads: a frame's window
        # starts two frames (four steps at 25 fps) before it.
        padded = torch.cat(
            [
                steps.new_zeros(2 * CONTEXT[0], *steps.shape[1:]),
                steps,
                steps.new_zeros(WINDOW, *steps.shape[1:]),
            ]
        )
        starts = [math.floor(i * AUDIO_STEPS / fps) for i in range(frames)]
        windows = torch.stack([padded[s : s + WINDOW] for s in starts])
        return windows.flatten(1, 2) + self.position

    def _faces(
        self, pixels: np.ndarray, prompts: torch.Tensor, batch: list[tuple[int, Box]]
    ) -> np.ndarray:
        """Generated 256x256 faces, RGB floats in [0, 255], one per (frame, box)."""
        crops = np.stack(
            [
                cv2.resize(
                    pixels[i, b.y : b.y + b.h, b.x : b.x + b.w],
                    (FACE_SIZE, FACE_SIZE),
                    interpolation=cv2.INTER_LANCZOS4,
                )
                for i, b in batch
            ]
        )
        # A still portrait gives the same crop every frame: encode each distinct crop once, as
        # MuseTalk's real-time mode encodes an avatar's frames once.
        distinct, which = np.unique(crops, axis=0, return_inverse=True)
        device, dtype = self.runtime.device, self.runtime.dtype
        with torch.inference_mode():
            reference = torch.from_numpy(distinct).to(device).permute(0, 3, 1, 2).to(dtype)
            reference = reference / 127.5 - 1
            masked = reference.clone()
            masked[:, :, FACE_SIZE // 2 :] = -1.0
            # The posterior's mode, as MuseTalk's training does: the same face, the same latent.
            latents = self.vae.encode(torch.cat([masked, reference])).latent_dist.mode()
            index = torch.from_numpy(which.reshape(-1)).to(device)
            latents = torch.cat(latents.chunk(2), dim=1)[index] * self.scale
            timestep = torch.zeros(1, device=device)
            made = self.unet(
                latents, timestep, encoder_hidden_states=prompts[[i for i, _ in batch]]
            ).sample
            faces = self.vae.decode(made / self.scale).sample
        return ((faces.float() / 2 + 0.5).clamp(0, 1) * 255).permute(0, 2, 3, 1).cpu().numpy()


def _paste(frame: np.ndarray, face: np.ndarray, box: Box) -> None:
    """Blend the lower half of the generated face into the box: MuseTalk's blending keeps the face
    above the box's middle line and feathers the rest (it takes the jaw outline from a face
    parser; here the box's edges). Nothing outside the lower half changes."""
    made = cv2.resize(np.ascontiguousarray(face), (box.w, box.h))
    region = frame[box.y : box.y + box.h, box.x : box.x + box.w].astype(np.float32)
    rows = np.arange(box.h, dtype=np.float32) - box.h // 2
    ramp = max(2.0, 0.1 * box.h)
    weight = feather(box) * np.clip(rows / ramp, 0.0, 1.0)[:, None, None]
    blended = weight * made + (1.0 - weight) * region
    frame[box.y : box.y + box.h, box.x : box.x + box.w] = np.clip(blended + 0.5, 0, 255).astype(
        np.uint8
    )

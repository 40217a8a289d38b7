"""Wav2Lip lip-sync: the published 96x96 network, its checkpoint format and its audio features.

The network follows Prajwal et al., "A Lip Sync Expert Is All You Need" (ACM MM 2020): a face
encoder over the masked and reference face (6 channels), an audio encoder over a 16-step mel
window, and a decoder that upsamples the audio embedding with skip connections from the face
encoder. Module names match the released checkpoints (`wav2lip.pth`, `wav2lip_gan.pth`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import cv2
import librosa
import numpy as np
import torch
from scipy import signal
from torch import nn
from torch.nn import functional as F

from models.base import Audio, Frames, LipSyncResult
from models.errors import ModelUnavailable
from models.neural.device import RuntimeLike, compile_module, pick_runtime, runtime_options
from models.neural.faces import Box, FaceDetector, feather, track_faces

FACE_SIZE = 96
MEL_STEPS = 16
MEL_RATE = 80.0  # mel frames per second: 16 kHz audio, hop 200


class ConvBlock(nn.Module):
    """A convolution (or transposed convolution), batch norm, optional identity skip, ReLU."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, *, residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


def _conv(
    cin: int, cout: int, kernel: int = 3, stride: int | tuple[int, int] = 1, padding: int = 1
) -> ConvBlock:
    return ConvBlock(nn.Conv2d(cin, cout, kernel, stride, padding))


def _stage(first: ConvBlock, channels: int, residuals: int) -> list[nn.Module]:
    """`first`, then `residuals` 3x3 blocks with identity skips at `channels`."""
    blocks: list[nn.Module] = [first]
    for _ in range(residuals):
        blocks.append(ConvBlock(nn.Conv2d(channels, channels, 3, 1, 1), residual=True))
    return blocks


def _down(
    cin: int, cout: int, residuals: int, stride: int | tuple[int, int] = 2
) -> list[nn.Module]:
    return _stage(_conv(cin, cout, 3, stride), cout, residuals)


def _up(cin: int, cout: int, residuals: int, stride: int = 2) -> nn.Sequential:
    """Transposed 3x3: x2 (stride 2) or from 1x1 to 3x3 (stride 1, no padding)."""
    padding, extra = (1, 1) if stride == 2 else (0, 0)
    deconv = nn.ConvTranspose2d(cin, cout, 3, stride, padding, output_padding=extra)
    return nn.Sequential(*_stage(ConvBlock(deconv), cout, residuals))


def _squeeze(channels: int) -> list[nn.Module]:
    """3x3 valid convolution then 1x1: a 3x3 map to a 1x1 embedding."""
    return [_conv(channels, channels, 3, 1, 0), _conv(channels, channels, 1, 1, 0)]


class Wav2Lip(nn.Module):
    """Input: mel windows (B, 1, 80, 16) and faces (B, 6, 96, 96) in [0, 1], BGR, the lower half
    of the first three channels masked. Output: the generated faces (B, 3, 96, 96)."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(_conv(6, 16, 7, 1, 3)),  # 96
                nn.Sequential(*_down(16, 32, 2)),  # 48
                nn.Sequential(*_down(32, 64, 3)),  # 24
                nn.Sequential(*_down(64, 128, 2)),  # 12
                nn.Sequential(*_down(128, 256, 2)),  # 6
                nn.Sequential(*_down(256, 512, 1)),  # 3
                nn.Sequential(*_squeeze(512)),  # 1
            ]
        )
        self.audio_encoder = nn.Sequential(
            *_stage(_conv(1, 32), 32, 2),
            *_down(32, 64, 2, stride=(3, 1)),
            *_down(64, 128, 2, stride=3),
            *_down(128, 256, 1, stride=(3, 2)),
            _conv(256, 512, 3, 1, 0),
            _conv(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(_conv(512, 512, 1, 1, 0)),  # 1
                _up(1024, 512, 1, stride=1),  # 3
                _up(1024, 512, 2),  # 6
                _up(768, 384, 2),  # 12
                _up(512, 256, 2),  # 24
                _up(320, 128, 2),  # 48
                _up(160, 64, 2),  # 96
            ]
        )
        self.output_block = nn.Sequential(_conv(80, 32), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, mels: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        skips = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(mels)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)


def load_wav2lip(path: Path, device: torch.device, dtype: torch.dtype) -> Wav2Lip:
    """Load a released checkpoint: {"state_dict": {"module.<name>": tensor}} (DataParallel)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
        model = Wav2Lip()
        model.load_state_dict(state)
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load Wav2Lip from {path}: {type(error).__name__}: {error}"
        ) from error
    return model.to(device=device, dtype=dtype).eval()


def melspectrogram(samples: np.ndarray) -> np.ndarray:
    """Wav2Lip's features for 16 kHz audio: pre-emphasis 0.97, STFT 800/200, 80 mels over
    55-7600 Hz, dB relative to 20 dB, scaled to [-4, 4]. Shape (80, frames)."""
    emphasised = signal.lfilter([1, -0.97], [1], samples)
    spectrum = np.abs(
        librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    )
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    decibels = 20 * np.log10(np.maximum(1e-5, basis @ spectrum)) - 20
    return np.clip(8 * (decibels + 100) / 100 - 4, -4, 4).astype(np.float32)


def mel_windows(audio: Audio, frames: int, fps: int) -> np.ndarray:
    """One 16-step mel window per video frame, (frames, 1, 80, 16); silence past the audio."""
    samples = audio.samples.astype(np.float64)
    if audio.sample_rate != 16000:
        g = math.gcd(audio.sample_rate, 16000)
        samples = signal.resample_poly(samples, 16000 // g, audio.sample_rate // g)
    needed = math.ceil((frames / fps + MEL_STEPS / MEL_RATE) * 16000)
    samples = np.pad(samples, (0, max(0, needed - len(samples))))
    mel = melspectrogram(samples)
    last = mel.shape[1] - MEL_STEPS
    starts = [min(int(i * MEL_RATE / fps), last) for i in range(frames)]
    return np.stack([mel[None, :, s : s + MEL_STEPS] for s in starts])


class Wav2LipEngine:
    """Lip-syncs the largest face of each frame to the audio; frames without a face pass through."""

    name: ClassVar[str] = "wav2lip"
    version: ClassVar[str] = "1"
    # Wav2Lip's released weights are for research / non-commercial use only (README of
    # Rudrabha/Wav2Lip; commercial use goes through Sync Labs).
    licence: ClassVar[str] = "wav2lip-noncommercial"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        runtime: RuntimeLike = None,
        batch_size: int = 64,
        detect_every: int = 5,
        smooth: int = 5,
    ) -> None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            found = [path / n for n in ("wav2lip_gan.pth", "wav2lip.pth") if (path / n).is_file()]
            if not found:
                raise ModelUnavailable(f"{path} has no wav2lip.pth or wav2lip_gan.pth")
            path = found[0]
        if not path.is_file():
            raise ModelUnavailable(f"Wav2Lip checkpoint {path} does not exist")
        self.runtime = pick_runtime(runtime_options(runtime))
        self.model = load_wav2lip(path, self.runtime.device, self.runtime.dtype)
        if self.runtime.compile:
            compile_module(self.model)
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
        mels = mel_windows(audio, len(pixels), frames.fps)
        out = pixels.copy()
        faces = [(i, box) for i, box in enumerate(boxes) if box is not None]
        for start in range(0, len(faces), self.batch_size):
            batch = faces[start : start + self.batch_size]
            for (i, box), mouth in zip(batch, self._mouths(pixels, mels, batch), strict=True):
                _paste(out[i], mouth, box)
        warnings = []
        if len(faces) < len(pixels):
            warnings.append(f"no face in {len(pixels) - len(faces)} of {len(pixels)} frames")
        return LipSyncResult(Frames(out, frames.fps), warnings)

    def _mouths(
        self, pixels: np.ndarray, mels: np.ndarray, batch: list[tuple[int, Box]]
    ) -> np.ndarray:
        """Generated 96x96 lower faces, RGB floats in [0, 255], one per (frame, box)."""
        crops = [
            cv2.resize(
                np.ascontiguousarray(pixels[i, b.y : b.y + b.h, b.x : b.x + b.w, ::-1]),
                (FACE_SIZE, FACE_SIZE),
            )
            for i, b in batch
        ]
        reference = np.stack(crops).astype(np.float32) / 255.0  # BGR, as the model was trained
        masked = reference.copy()
        masked[:, FACE_SIZE // 2 :] = 0.0
        faces = np.concatenate([masked, reference], axis=3).transpose(0, 3, 1, 2)
        device, dtype = self.runtime.device, self.runtime.dtype
        with torch.inference_mode():
            made = self.model(
                torch.from_numpy(mels[[i for i, _ in batch]]).to(device, dtype),
                torch.from_numpy(faces).to(device, dtype),
            )
        return made.float().cpu().numpy().transpose(0, 2, 3, 1)[..., ::-1] * 255.0


def _paste(frame: np.ndarray, face: np.ndarray, box: Box) -> None:
    """Blend the generated face into the box with feathered edges; outside it nothing changes."""
    made = cv2.resize(np.ascontiguousarray(face), (box.w, box.h))
    region = frame[box.y : box.y + box.h, box.x : box.x + box.w].astype(np.float32)
    weight = feather(box)
    blended = weight * made + (1.0 - weight) * region
    frame[box.y : box.y + box.h, box.x : box.x + box.w] = np.clip(blended + 0.5, 0, 255).astype(
        np.uint8
    )

"""First Order Motion Model character animation: a still portrait moved by a driving motion.

Siarohin et al., "First Order Motion Model for Image Animation" (NeurIPS 2019;
AliaksandrSiarohin/first-order-model, MIT code, checkpoints trained on VoxCeleb). A keypoint
detector finds keypoints and their local affine jacobians in the source and in each driving
frame; the dense motion network turns the keypoints' motion into a dense flow and an occlusion
map; the occlusion-aware generator warps the source's features by it and decodes the frame.
Module names match the published checkpoints (`vox-cpk.pth.tar`: 'kp_detector' and 'generator'
state dicts); the sizes come from the published config's `model_params` (`config/vox-256.yaml`).
Animation is relative, as the repository's demo makes it (`animate.normalize_kp`): each driving
frame's keypoint motion since the first driving frame, scaled by the ratio of the two faces'
keypoint hulls, moves the source's keypoints. The model folder holds one config and one
checkpoint:

    vox-256.yaml        the repository's config (model_params, dataset_params.frame_shape)
    vox-cpk.pth.tar     {'kp_detector': ..., 'generator': ..., ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import yaml
from scipy.spatial import ConvexHull, QhullError
from torch import nn
from torch.nn import functional as F

from models.base import Audio, Frames, LipSyncResult
from models.errors import ModelUnavailable
from models.neural.device import RuntimeLike, pick_runtime, runtime_options
from models.neural.driving import head_crop, head_motion, loop, read_driving_video
from models.neural.faces import Box, FaceDetector, feather

Keypoints = dict[str, torch.Tensor]  # 'value' (B, K, 2) in [-1, 1]; 'jacobian' (B, K, 2, 2)


def make_coordinate_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(height, width, 2): x then y of each pixel centre, from -1 to 1 inclusive."""
    x = 2 * torch.arange(width, dtype=like.dtype, device=like.device) / (width - 1) - 1
    y = 2 * torch.arange(height, dtype=like.dtype, device=like.device) / (height - 1) - 1
    return torch.stack(
        [x.view(1, -1).expand(height, width), y.view(-1, 1).expand(height, width)], 2
    )


def kp2gaussian(value: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """Each keypoint as a Gaussian over the grid: (B, K, height, width)."""
    grid = make_coordinate_grid(height, width, value)
    offset = grid.view(1, 1, height, width, 2) - value.view(*value.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (offset**2).sum(-1) / variance)


class ResBlock2d(nn.Module):
    """Pre-activation residual block at constant resolution."""

    def __init__(self, features: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


class UpBlock2d(nn.Module):
    """Nearest x2 upsampling, convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class DownBlock2d(nn.Module):
    """Convolution, batch norm, ReLU, 2x2 average pooling."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(cout, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    """Convolution, batch norm, ReLU at constant resolution."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


def _width(expansion: int, level: int, most: int) -> int:
    return min(most, expansion * 2**level)


class Encoder(nn.Module):
    """The hourglass's way down; returns the input and every level's output."""

    def __init__(self, expansion: int, cin: int, blocks: int, most: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                cin if i == 0 else _width(expansion, i, most), _width(expansion, i + 1, most)
            )
            for i in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """The hourglass's way up, concatenating each level's skip."""

    def __init__(self, expansion: int, cin: int, blocks: int, most: int) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                (1 if i == blocks - 1 else 2) * _width(expansion, i + 1, most),
                _width(expansion, i, most),
            )
            for i in reversed(range(blocks))
        )
        self.out_filters = expansion + cin

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # type: ignore[no-any-return]


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by 1/scale. The kernel is a buffer the checkpoints hold."""

    weight: torch.Tensor

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        steps = torch.arange(size, dtype=torch.float32)
        bell = torch.exp(-((steps - (size - 1) / 2) ** 2) / (2 * sigma**2))
        kernel = torch.outer(bell, bell)
        kernel = (kernel / kernel.sum()).view(1, 1, size, size).repeat(channels, 1, 1, 1)
        self.register_buffer("weight", kernel)
        self.groups = channels
        self.scale = scale
        self.step = int(1 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.conv2d(
            F.pad(x, (self.ka, self.kb, self.ka, self.kb)), self.weight, groups=self.groups
        )
        return out[:, :, :: self.step, :: self.step]


class KPDetector(nn.Module):
    """Keypoints as the softmax-weighted mean of heatmaps, with a jacobian per keypoint."""

    def __init__(
        self,
        block_expansion: int,
        num_kp: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        estimate_jacobian: bool = False,
        scale_factor: float = 1,
        single_jacobian_map: bool = False,
        pad: int = 0,
    ) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, (7, 7), padding=pad)
        self.jacobian: nn.Conv2d | None = None
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters, 4 * self.num_jacobian_maps, (7, 7), padding=pad
            )
            # Trained from the identity, as the repository initialises it.
            nn.init.zeros_(self.jacobian.weight)
            self.jacobian.bias = nn.Parameter(torch.tensor([1.0, 0, 0, 1] * self.num_jacobian_maps))
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, x: torch.Tensor) -> Keypoints:
        if self.scale_factor != 1:
            x = self.down(x)
        features = self.predictor(x)
        prediction = self.kp(features)
        b, k, h, w = prediction.shape
        heatmap = F.softmax(prediction.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, heatmap)
        out = {"value": (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))}
        if self.jacobian is not None:
            maps = self.jacobian(features).reshape(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * maps).view(b, k, 4, -1).sum(dim=-1)
            out["jacobian"] = jacobian.view(b, k, 2, 2)
        return out


class DenseMotionNetwork(nn.Module):
    """From the keypoints' local affine motions to one dense flow (a softmax mix of them and of
    the identity, for the background) and an occlusion map."""

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        self.hourglass = Hourglass(
            block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features
        )
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, (7, 7), padding=(3, 3))
        self.occlusion: nn.Conv2d | None = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, (7, 7), padding=(3, 3))
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def sparse_motions(self, h: int, w: int, driving: Keypoints, source: Keypoints) -> torch.Tensor:
        """Eq. 4: per keypoint (and the identity first), where each driving pixel comes from in
        the source: (B, K + 1, h, w, 2)."""
        b = driving["value"].shape[0]
        identity = make_coordinate_grid(h, w, source["value"]).view(1, 1, h, w, 2)
        grid = identity - driving["value"].view(b, self.num_kp, 1, 1, 2)
        if "jacobian" in driving:
            jacobian = torch.matmul(source["jacobian"], torch.inverse(driving["jacobian"]))
            grid = torch.matmul(jacobian[:, :, None, None], grid.unsqueeze(-1)).squeeze(-1)
        moved = grid + source["value"].view(b, self.num_kp, 1, 1, 2)
        return torch.cat([identity.expand(b, 1, h, w, 2), moved], dim=1)

    def forward(
        self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
    ) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, c, h, w = source_image.shape
        # Eq. 6: the keypoints' Gaussians, driving minus source, with a zero background map.
        heatmap = kp2gaussian(kp_driving["value"], h, w, self.kp_variance) - kp2gaussian(
            kp_source["value"], h, w, self.kp_variance
        )
        heatmap = torch.cat([heatmap.new_zeros(b, 1, h, w), heatmap], dim=1).unsqueeze(2)
        motions = self.sparse_motions(h, w, kp_driving, kp_source)
        # Eq. 7: the source warped by each keypoint's motion.
        repeated = source_image.unsqueeze(1).expand(b, self.num_kp + 1, c, h, w)
        deformed = F.grid_sample(
            repeated.reshape(-1, c, h, w), motions.view(-1, h, w, 2), align_corners=True
        ).view(b, self.num_kp + 1, c, h, w)
        prediction = self.hourglass(torch.cat([heatmap, deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(prediction), dim=1).unsqueeze(2)
        deformation = (motions.permute(0, 1, 4, 2, 3) * mask).sum(dim=1).permute(0, 2, 3, 1)
        out = {"deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out


class OcclusionAwareGenerator(nn.Module):
    """Encode the source, warp its features by the dense motion, mask the occluded parts,
    decode."""

    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = False,
        dense_motion_params: dict[str, Any] | None = None,
        estimate_jacobian: bool = False,
    ) -> None:
        super().__init__()
        self.dense_motion_network: DenseMotionNetwork | None = None
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp,
                num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                **dense_motion_params,
            )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                _width(block_expansion, i, max_features),
                _width(block_expansion, i + 1, max_features),
            )
            for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                _width(block_expansion, num_down_blocks - i, max_features),
                _width(block_expansion, num_down_blocks - i - 1, max_features),
            )
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        width = _width(block_expansion, num_down_blocks, max_features)
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width, kernel_size=3, padding=1))
        self.final = nn.Conv2d(block_expansion, num_channels, (7, 7), padding=(3, 3))

    def forward(
        self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
    ) -> torch.Tensor:
        """The generated frames, (B, C, H, W) in [0, 1]."""
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(source_image, kp_driving, kp_source)
            deformation = motion["deformation"]
            if deformation.shape[1:3] != out.shape[2:]:
                deformation = F.interpolate(
                    deformation.permute(0, 3, 1, 2), size=out.shape[2:], mode="bilinear"
                ).permute(0, 2, 3, 1)
            out = F.grid_sample(out, deformation, align_corners=True)
            if "occlusion_map" in motion:
                occlusion = motion["occlusion_map"]
                if occlusion.shape[2:] != out.shape[2:]:
                    occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear")
                out = out * occlusion
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))


def normalize_kp(source: Keypoints, driving: Keypoints, initial: Keypoints) -> Keypoints:
    """`animate.normalize_kp` with relative movement, relative jacobians and
    adapt_movement_scale: the source's keypoints moved as the driving ones moved since the first
    driving frame, scaled by sqrt(source hull area / first driving hull area)."""
    scale = _hull_side(source["value"][0]) / _hull_side(initial["value"][0])
    moved = {"value": (driving["value"] - initial["value"]) * scale + source["value"]}
    if "jacobian" in driving:
        change = torch.matmul(driving["jacobian"], torch.inverse(initial["jacobian"]))
        moved["jacobian"] = torch.matmul(change, source["jacobian"])
    return moved


def _hull_side(points: torch.Tensor) -> float:
    """sqrt of the keypoints' convex hull area; 1 where they span no area (a line, one point)."""
    try:
        area = float(ConvexHull(points.detach().float().cpu().numpy()).volume)
    except (QhullError, ValueError):
        return 1.0
    return float(np.sqrt(area)) if area > 0 else 1.0


def load_fomm(
    config_path: Path, checkpoint_path: Path, device: torch.device
) -> tuple[KPDetector, OcclusionAwareGenerator, int]:
    """The keypoint detector and the generator built from the config's `model_params` and
    given the checkpoint's state dicts (strictly: a missing or unexpected key fails), and the
    frame side the model was trained at (`dataset_params.frame_shape`, 256 for vox-256)."""
    try:
        config = yaml.safe_load(config_path.read_text())
        params = config["model_params"]
        common = params["common_params"]
        kp_detector = KPDetector(**params["kp_detector_params"], **common)
        generator = OcclusionAwareGenerator(**params["generator_params"], **common)
        side = int(config.get("dataset_params", {}).get("frame_shape", [256])[0])
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        for name, module in (("kp_detector", kp_detector), ("generator", generator)):
            module.load_state_dict(checkpoint[name])
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load FOMM from {checkpoint_path} with {config_path.name}:"
            f" {type(error).__name__}: {error}"
        ) from error
    return kp_detector.to(device).eval(), generator.to(device).eval(), side


def _model_file(folder: Path, pattern: str, named: str | None) -> Path:
    """The one file matching `pattern` in the folder, or the one `named`."""
    if named is not None:
        path = folder / named
        if not path.is_file():
            raise ModelUnavailable(f"FOMM folder {folder} lacks {named}")
        return path
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        what = "no" if not found else "several"
        raise ModelUnavailable(f"FOMM folder {folder} has {what} {pattern} files: name one")
    return found[0]


class FommEngine:
    """Animates the portrait in a clip's first frame: the square around its largest face is
    moved by the driving motion (the scene's driving video, else one the Serve config names,
    else the studio's head-motion template), looped to the clip's length, and blended back into
    the frame. Frames without a face pass through. The mouth follows the driving motion, not the
    audio."""

    name: ClassVar[str] = "fomm"
    version: ClassVar[str] = "1"
    # The code is MIT; the published checkpoints are trained on VoxCeleb, TaiChi and other
    # research datasets whose terms allow research use only.
    licence: ClassVar[str] = "fomm-noncommercial"

    def __init__(
        self,
        folder: str | Path,
        *,
        runtime: RuntimeLike = None,
        batch_size: int = 16,
        config: str | None = None,
        checkpoint: str | None = None,
        driving_video: str | Path | None = None,
    ) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ModelUnavailable(f"FOMM folder {path} does not exist")
        config_path = _model_file(path, "*.yaml", config)
        checkpoint_path = _model_file(path, "*.pth.tar", checkpoint)
        # float32 whatever the runtime's dtype: the jacobians are inverted, which half
        # precision cannot do.
        self.device = pick_runtime(runtime_options(runtime)).device
        self.kp_detector, self.generator, self.side = load_fomm(
            config_path, checkpoint_path, self.device
        )
        self.driving = None
        if driving_video is not None:
            self.driving = read_driving_video(Path(driving_video).expanduser().read_bytes())
        self.detector = FaceDetector()
        self.batch_size = batch_size

    def sync(self, frames: Frames, audio: Audio, driving: bytes | None = None) -> LipSyncResult:
        """`driving`: a driving video (the scene's) in place of the configured motion."""
        source = frames.frame(0)
        if not self.detector.available:
            return LipSyncResult(frames, ["no face detector available: frames left unchanged"])
        face = self.detector.largest_face(source)
        if face is None:
            return LipSyncResult(frames, ["no face found: frames left unchanged"])
        box = head_crop(face, *source.shape[:2])
        portrait = source[box.y : box.y + box.h, box.x : box.x + box.w]
        video = read_driving_video(driving) if driving is not None else self.driving
        if video is None:
            motion = head_motion(portrait, len(frames), frames.fps)
        else:
            motion = loop(video.pixels, len(frames))
        out = np.repeat(source[None], len(frames), axis=0)
        for i, head in enumerate(self.animate(portrait, motion)):
            _paste(out[i], head, box)
        return LipSyncResult(Frames(out, frames.fps))

    def animate(self, source: np.ndarray, driving: np.ndarray) -> np.ndarray:
        """One frame per driving frame, (T, H, W, 3) uint8 at the source's size: the source
        moved as the driving frames move relative to the first one (demo.make_animation)."""
        height, width = source.shape[:2]
        with torch.inference_mode():
            image = self._tensor(source[None])
            kp_source = self.kp_detector(image)
            kp_initial = self.kp_detector(self._tensor(driving[:1]))
            made = []
            for start in range(0, len(driving), self.batch_size):
                kp_driving = self.kp_detector(
                    self._tensor(driving[start : start + self.batch_size])
                )
                count = kp_driving["value"].shape[0]
                moved = normalize_kp(
                    _repeat(kp_source, count), kp_driving, _repeat(kp_initial, count)
                )
                prediction = self.generator(
                    image.expand(count, -1, -1, -1), moved, _repeat(kp_source, count)
                )
                made.append((prediction * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
        frames = np.concatenate(made)
        return np.stack(
            [cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames]
        )

    def _tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) to float (B, 3, side, side) in [0, 1] on the model's device."""
        resized = np.stack(
            [cv2.resize(p, (self.side, self.side), interpolation=cv2.INTER_AREA) for p in pixels]
        )
        return torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2).float() / 255


def _repeat(keypoints: Keypoints, count: int) -> Keypoints:
    return {k: v.expand(count, *v.shape[1:]) for k, v in keypoints.items()}


def _paste(frame: np.ndarray, head: np.ndarray, box: Box) -> None:
    """Blend the animated square into the frame with feathered edges."""
    region = frame[box.y : box.y + box.h, box.x : box.x + box.w].astype(np.float32)
    weight = feather(box)
    blended = weight * head.astype(np.float32) + (1.0 - weight) * region
    frame[box.y : box.y + box.h, box.x : box.x + box.w] = np.clip(blended + 0.5, 0, 255).astype(
        np.uint8
    )

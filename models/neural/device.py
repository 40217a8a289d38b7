"""Where and how a neural engine runs: device, dtype, seeding, compilation, attention kernel."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Processors that compute attention without torch's scaled_dot_product_attention.
_NON_SDPA_PROCESSORS = {"AttnProcessor", "SlicedAttnProcessor", "XFormersAttnProcessor"}


class RuntimeOptions(BaseModel):
    """How to run an engine; every field defaults to the best choice for the machine."""

    device: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    compile: bool = False
    vae_tiling: bool = True
    vae_slicing: bool = True


RuntimeLike = RuntimeOptions | Mapping[str, Any] | None


def runtime_options(value: RuntimeLike) -> RuntimeOptions:
    """Options given as such, as a mapping (from the Serve config YAML) or not at all."""
    return (
        value if isinstance(value, RuntimeOptions) else RuntimeOptions.model_validate(value or {})
    )


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    compile: bool


def pick_runtime(options: RuntimeOptions) -> Runtime:
    """CUDA when present with bf16 (fp16 on cards without bf16); the CPU computes in float32."""
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if options.dtype is not None:
        dtype = _DTYPES[options.dtype]
    elif device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    return Runtime(device=device, dtype=dtype, compile=options.compile)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator: diffusers draws the noise on it, so a seed gives the same video anywhere."""
    return torch.Generator("cpu").manual_seed(seed)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG for libraries that sample from it, restoring it afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


def compile_module(module: torch.nn.Module) -> None:
    """Compile in place (the module keeps its class, so pipelines still accept it)."""
    module.compile(dynamic=False)


def _backend(processor: object) -> str:
    """The kernel a dispatching processor uses; unset means the process-wide default."""
    from diffusers.utils.constants import DIFFUSERS_ATTN_BACKEND

    return str(getattr(processor, "_attention_backend", None) or DIFFUSERS_ATTN_BACKEND)


def pin_sdpa(model: Any) -> None:
    """Keep a diffusers model on torch SDPA even when DIFFUSERS_ATTN_BACKEND names another."""
    processors = getattr(model, "attn_processors", {})
    dispatching = [p for p in processors.values() if hasattr(p, "_attention_backend")]
    if any(_backend(p) != "native" for p in dispatching):
        model.set_attention_backend("native")


def non_sdpa_attention(model: torch.nn.Module) -> list[str]:
    """Names of attention processors in `model` that do not run torch SDPA (empty is right)."""
    return [
        name
        for name, p in getattr(model, "attn_processors", {}).items()
        if type(p).__name__ in _NON_SDPA_PROCESSORS
        or (hasattr(p, "_attention_backend") and _backend(p) != "native")
    ]

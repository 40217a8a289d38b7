"""Tiny random models in the real on-disk formats, for tests: `python -m tests.tiny_models OUT_DIR`.

Each folder loads through the same code as the real weights: diffusers pipelines assembled from
tiny component configs (as diffusers' own tests do) and saved with `save_pretrained`, tokenizers
built offline from a character vocabulary, Coqui VITS and XTTS v2 folders saved the way Coqui
publishes them, and a Wav2Lip checkpoint with DataParallel "module." keys. Real architectures
whose size the format fixes (Wav2Lip, XTTS' HiFi-GAN decoder and speaker encoder) are full size.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")

# XTTS v2 studio speakers the Coqui voice mapping prefers; the tiny model carries these names.
XTTS_SPEAKERS = ("Ana Florence", "Claribel Dervla", "Damien Black", "Andrew Chipper")
VITS_SPEAKERS = ("p225", "p226", "p227", "p228")


def t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer over single characters, built without sentencepiece files."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in _CHARS] + [("▁" + c, -3.5) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _t5() -> tuple[Any, Any]:
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4
    )
    return T5EncoderModel(config), tokenizer


def _clip_text() -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    tokens = specials + _CHARS + [c + "</w>" for c in _CHARS]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])
    tokenizer.model_max_length = 77
    config = CLIPTextConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config), tokenizer


def build_ltx(out: Path) -> None:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    text_encoder, tokenizer = _t5()
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe: Any = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(out)


def build_cogvideox(out: Path) -> None:
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    text_encoder, tokenizer = _t5()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=4,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe: Any = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    pipe.save_pretrained(out)


def build_svd(out: Path) -> None:
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=6,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    encoder_config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        intermediate_size=37,
        patch_size=32,
    )
    pipe: Any = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=CLIPVisionModelWithProjection(encoder_config),
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
    )
    pipe.save_pretrained(out)


def build_keyframes(out: Path) -> None:
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    text_encoder, tokenizer = _clip_text()
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)


def save_coqui(out: Path, config: Any, model: torch.nn.Module, filename: str) -> None:
    """As Coqui's trainer saves: {"config": dict, "model": state_dict} plus config.json."""
    torch.save({"config": config.to_dict(), "model": model.state_dict()}, out / filename)
    config.save_json(str(out / "config.json"))


def build_vits(out: Path, args: Any = None) -> None:
    """Multi-speaker, character-based VITS (no phonemizer), as the VCTK VITS is laid out.
    `args` (VitsArgs) gives the architecture: tiny unless the caller passes another."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    out.mkdir(parents=True, exist_ok=True)
    speakers_file = out / "speaker_ids.json"
    speakers_file.write_text(json.dumps({name: i for i, name in enumerate(VITS_SPEAKERS)}))
    args = args or VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        upsample_initial_channel_decoder=16,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        use_sdp=False,
        speaker_embedding_channels=8,
    )
    args.init_discriminator = False
    args.use_speaker_embedding = True
    args.speakers_file = str(speakers_file)
    config = VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(sample_rate=16000),
        use_phonemes=False,
        text_cleaner="english_cleaners",
        use_speaker_embedding=True,
        speakers_file=str(speakers_file),
    )
    model = Vits(config)
    config.speakers_file = config.model_args.speakers_file = speakers_file.name
    save_coqui(out, config, model, "model_file.pth")


def build_xtts(out: Path, args: Any = None) -> None:
    """An XTTS v2 folder: config.json, model.pth, vocab.json, speakers_xtts.pth. `args`
    (XttsArgs) gives the architecture: tiny unless the caller passes another."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    out.mkdir(parents=True, exist_ok=True)
    config = XttsConfig(
        model_args=args
        or XttsArgs(
            gpt_layers=1,
            gpt_n_model_channels=32,
            gpt_n_heads=2,
            gpt_max_audio_tokens=12,
            gpt_max_text_tokens=100,
            gpt_max_prompt_tokens=8,
            gpt_num_audio_tokens=66,
            gpt_start_audio_token=64,
            gpt_stop_audio_token=65,
            gpt_use_perceiver_resampler=True,
            decoder_input_dim=32,
        )
    )
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [
        f"[{lang}]" for lang in config.languages
    ]
    vocab = {token: i for i, token in enumerate(specials + _CHARS)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(out / "vocab.json"))

    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(out / "vocab.json")
    model.init_models()
    save_coqui(out, config, model, "model.pth")
    # The GPT conditioning latents have 32 perceiver queries of the GPT width; the speaker
    # embedding is the 512-d d-vector the HiFi-GAN decoder takes.
    width = config.model_args.gpt_n_model_channels
    speakers = {
        name: {
            "gpt_cond_latent": torch.randn(1, 32, width),
            "speaker_embedding": torch.randn(1, config.model_args.d_vector_dim, 1),
        }
        for name in XTTS_SPEAKERS
    }
    torch.save(speakers, out / "speakers_xtts.pth")


def build_wav2lip(out: Path) -> None:
    from models.neural.wav2lip import Wav2Lip

    out.mkdir(parents=True, exist_ok=True)
    model = Wav2Lip()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, out / "wav2lip.pth")


BUILDERS: dict[str, Callable[[Path], None]] = {
    "ltx-video": build_ltx,
    "cogvideox": build_cogvideox,
    "svd": build_svd,
    "keyframes": build_keyframes,
    "vits": build_vits,
    "xtts": build_xtts,
    "wav2lip": build_wav2lip,
}


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m tests.tiny_models OUT_DIR")
    out_dir = Path(argv[0])
    for name, build in BUILDERS.items():
        started = time.perf_counter()
        torch.manual_seed(0)
        build(out_dir / name)
        size = sum(p.stat().st_size for p in (out_dir / name).rglob("*") if p.is_file())
        took = time.perf_counter() - started
        print(f"{out_dir / name}  {size / 1e6:7.1f} MB  {took:5.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

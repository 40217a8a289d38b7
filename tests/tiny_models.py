"""Tiny random models in the real on-disk formats, for tests: `python -m tests.tiny_models OUT_DIR`.

Each folder loads through the same code as the real weights: diffusers pipelines assembled from
tiny component configs (as diffusers' own tests do) and saved with `save_pretrained`, tokenizers
built offline from a character vocabulary (LTX-2's Gemma 3 included), Coqui VITS and XTTS v2
folders saved the way Coqui publishes them, a Wav2Lip checkpoint with DataParallel "module."
keys, and a Kokoro folder (config.json, the component state dicts in one .pth, voice packs) as
hexgrad publishes it. Real architectures whose size the format fixes (Wav2Lip, XTTS' HiFi-GAN
decoder and speaker encoder, Kokoro's decoder) are full size.
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


def _umt5() -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=len(t5_tokenizer()), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4
    )
    return UMT5EncoderModel(config)


def _wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )  # fmt: skip


def _wan_transformer(in_channels: int, **extra: Any) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
        in_channels=in_channels, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        **extra,
    )  # fmt: skip


def build_wan(out: Path) -> None:
    """Wan 2.1 text-to-video, as diffusers' own tests configure it."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    pipe: Any = WanPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=_umt5(),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=_wan_transformer(16),
    )
    pipe.save_pretrained(out)


def build_wan_i2v(out: Path) -> None:
    """Wan 2.1 image-to-video: latents and the image's mask enter the transformer (36 channels)
    beside a CLIP image encoder's embedding."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, intermediate_size=16, patch_size=1,
        )
    )  # fmt: skip
    pipe: Any = WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=_umt5(),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=_wan_transformer(36, image_dim=4),
        image_encoder=encoder,
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )
    pipe.save_pretrained(out)


def tiny_gemma3_tokenizer() -> Any:
    """A Gemma tokenizer over single characters, built without a tokenizer file."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GemmaTokenizerFast  # type: ignore[attr-defined]

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", " ", *_CHARS])}
    model = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return GemmaTokenizerFast(
        tokenizer_object=model, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>",
    )  # fmt: skip


def _gemma3() -> tuple[Any, Any]:
    """A Gemma 3 (text and a small SigLIP tower, as LTX-2 loads it) and its tokenizer."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    tokenizer = tiny_gemma3_tokenizer()
    vocab = tokenizer.get_vocab()
    text = Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=256,
        sliding_window=64,
    )  # fmt: skip
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=28, patch_size=14,
    )  # fmt: skip
    config = Gemma3Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
        boi_token_index=len(vocab), eoi_token_index=len(vocab) + 1,
        image_token_index=len(vocab) + 2,
    )  # fmt: skip
    return Gemma3ForConditionalGeneration(config), tokenizer


def build_ltx2(out: Path) -> None:
    """LTX-2 (audio and video), components as diffusers' LTX-2 tests configure them."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    text_encoder, tokenizer = _gemma3()
    width = text_encoder.config.text_config.hidden_size
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4,
        audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8,
        num_layers=2, qk_norm="rms_norm_across_heads", caption_channels=width,
        rope_double_precision=False, rope_type="split",
    )  # fmt: skip
    connectors = LTX2TextConnectors(
        caption_channels=width,
        text_proj_in_factor=text_encoder.config.text_config.num_hidden_layers + 1,
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8,
        video_connector_num_layers=1, video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32, rope_theta=10000.0, rope_double_precision=False,
        causal_temporal_positioning=False, rope_type="split",
    )  # fmt: skip
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
        decoder_block_out_channels=(8,), layers_per_block=(1,), decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )  # fmt: skip
    audio_vae: Any = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1,
        attn_resolutions=None, in_channels=2, resolution=32, latent_channels=2,
        norm_type="pixel", causality_axis="height", dropout=0.0, mid_block_add_attention=False,
        sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8,
    )  # fmt: skip
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins,
        hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2],
        resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )  # fmt: skip
    pipe: Any = LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae,
        text_encoder=text_encoder, tokenizer=tokenizer, connectors=connectors,
        transformer=transformer, vocoder=vocoder,
    )  # fmt: skip
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


def build_cogvideox_i2v(out: Path) -> None:
    """CogVideoX image-to-video: the image's latents join the noise (twice the channels)."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    text_encoder, tokenizer = _t5()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=4, sample_height=2,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True,
    )  # fmt: skip
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe: Any = CogVideoXImageToVideoPipeline(
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


def build_stable_audio(out: Path) -> None:
    """Stable Audio Open at 2 kHz with a hop of 8 samples and 512 latent frames: pieces of at
    most 2.048 s, so that a film of a few seconds is generated in several crossfaded pieces."""
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )

    text_encoder, tokenizer = _t5()
    tokenizer.model_max_length = 128
    transformer = StableAudioDiTModel(
        sample_size=512,
        in_channels=3,
        num_layers=2,
        attention_head_dim=4,
        num_key_value_attention_heads=2,
        out_channels=3,
        cross_attention_dim=4,
        time_proj_dim=8,
        global_states_input_dim=8,
        cross_attention_input_dim=4,
    )
    scheduler = CosineDPMSolverMultistepScheduler(
        solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
        sigma_schedule="exponential",
    )  # fmt: skip
    vae = AutoencoderOobleck(
        encoder_hidden_size=6,
        downsampling_ratios=[2, 4],
        decoder_channels=3,
        decoder_input_channels=3,
        audio_channels=2,
        channel_multiples=[2, 4],
        sampling_rate=2000,
    )
    projection = StableAudioProjectionModel(
        text_encoder_dim=text_encoder.config.d_model, conditioning_dim=4, min_value=0,
        max_value=32,
    )  # fmt: skip
    pipe: Any = StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=scheduler,
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


def write_musetalk(out: Path, unet_config: dict[str, Any], vae: Any, whisper_config: Any) -> None:
    """MuseTalk's `models/` folder as its download script lays it out, with random weights:
    musetalkV15/musetalk.json (the UNet2DConditionModel config) and unet.pth (the UNet's state
    dict), sd-vae (the AutoencoderKL, diffusion_pytorch_model.bin) and whisper (the Whisper
    config, the feature extractor's preprocessor_config.json, and pytorch_model.bin holding a
    WhisperForConditionalGeneration state dict, as openai/whisper-tiny does)."""
    from diffusers import UNet2DConditionModel
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    unet = UNet2DConditionModel.from_config(unet_config)
    (out / "musetalkV15").mkdir(parents=True)
    (out / "musetalkV15" / "musetalk.json").write_text(json.dumps(unet_config, indent=2))
    torch.save(unet.state_dict(), out / "musetalkV15" / "unet.pth")
    vae.save_pretrained(out / "sd-vae", safe_serialization=False)
    whisper_config.architectures = ["WhisperForConditionalGeneration"]
    whisper = WhisperForConditionalGeneration(whisper_config)
    whisper_config.save_pretrained(out / "whisper")
    torch.save(whisper.state_dict(), out / "whisper" / "pytorch_model.bin")
    WhisperFeatureExtractor().save_pretrained(out / "whisper")


def build_musetalk(out: Path) -> None:
    """MuseTalk at tiny widths; the feature extractor and the encoder's 30 s input are Whisper's
    own, the config keys musetalk.json's."""
    from diffusers import AutoencoderKL
    from transformers import WhisperConfig

    width = 16  # Whisper's d_model, the UNet's cross-attention width (384 in whisper-tiny)
    unet_config = {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0",
        "act_fn": "silu", "attention_head_dim": 2, "block_out_channels": [16, 32],
        "center_input_sample": False, "cross_attention_dim": width,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "downsample_padding": 1,
        "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 1,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 8,
        "out_channels": 4, "sample_size": 32, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }  # fmt: skip
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),  # four blocks: 256 px faces to 32x32 latents
        latent_channels=4,
        norm_num_groups=4,
        sample_size=256,
    )
    whisper = WhisperConfig(
        vocab_size=64, d_model=width, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500, max_target_positions=32,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    write_musetalk(out, unet_config, vae, whisper)


def build_fomm(out: Path) -> None:
    """FOMM's published pair at tiny sizes: a config in the repository's YAML layout
    (config/vox-256.yaml's keys, 64 px frames, five keypoints) and a checkpoint saved as its
    Logger.save_cpk does (`vox-cpk.pth.tar`: the modules' state dicts by name and the epoch,
    in torch's legacy file format)."""
    import yaml

    from models.neural.fomm import KPDetector, OcclusionAwareGenerator

    hourglass = {"block_expansion": 4, "max_features": 16, "num_blocks": 3, "scale_factor": 0.5}
    model_params: dict[str, Any] = {
        "common_params": {"num_kp": 5, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, **hourglass},
        "generator_params": {
            "block_expansion": 4, "max_features": 16, "num_down_blocks": 2,
            "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
            "dense_motion_params": hourglass,
        },
        "discriminator_params": {"scales": [1], "block_expansion": 4, "max_features": 16},
    }  # fmt: skip
    config = {"dataset_params": {"frame_shape": [64, 64, 3]}, "model_params": model_params}
    out.mkdir(parents=True, exist_ok=True)
    (out / "vox-256.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    common = model_params["common_params"]
    kp_detector = KPDetector(**model_params["kp_detector_params"], **common)
    generator = OcclusionAwareGenerator(**model_params["generator_params"], **common)
    # He initialisation keeps the source's picture alive through the random generator (torch's
    # default shrinks it layer by layer to a flat grey), so that its motion shows in the frames.
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    checkpoint = {
        "kp_detector": kp_detector.state_dict(), "generator": generator.state_dict(), "epoch": 0
    }  # fmt: skip
    # The published checkpoints predate torch's zip format (torch.save in torch 1.x, 2019-20).
    torch.save(checkpoint, out / "vox-cpk.pth.tar", _use_new_zipfile_serialization=False)


# Every symbol a Kokoro vocabulary may map, for the tiny model: printable ASCII (Kokoro's
# diphthong letters, stress and punctuation), the IPA and spacing-modifier blocks espeak-ng
# writes, and the few IPA letters outside them.
KOKORO_SYMBOLS = "".join(
    [chr(c) for c in range(0x20, 0x7F)]
    + [chr(c) for c in range(0x250, 0x300)]
    + ["\u00e6", "\u00e7", "\u00f0", "\u00f8", "\u0127", "\u014b", "\u0153", "\u0303",
       "\u03b2", "\u03b8", "\u03c7", "\u1d4a"]
)  # fmt: skip
KOKORO_PACKS = ("af_heart", "am_michael", "bf_emma", "bm_george", "ef_dora", "ff_siwis",
                "hf_alpha", "hm_omega")  # fmt: skip


def build_kokoro(out: Path) -> None:
    """Kokoro-82M's layout: config.json (vocab, ALBERT, prosody and iSTFTNet sizes), one .pth of
    the five components' state dicts, and voice packs of (510, 1, 256) style vectors."""
    from kokoro import KModel

    out.mkdir(parents=True, exist_ok=True)
    config = {
        "vocab": {symbol: i + 1 for i, symbol in enumerate(KOKORO_SYMBOLS)},
        "n_token": len(KOKORO_SYMBOLS) + 1,
        "hidden_dim": 512, "style_dim": 128, "n_layer": 1, "max_dur": 8, "dropout": 0.0,
        "text_encoder_kernel_size": 3, "n_mels": 80, "dim_in": 16, "max_conv_dim": 16,
        "multispeaker": True,
        "plbert": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
                   "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.0},
        "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6],
                     "gen_istft_hop_size": 5, "gen_istft_n_fft": 20,
                     "resblock_dilation_sizes": [[1, 3, 5]], "resblock_kernel_sizes": [3],
                     "upsample_initial_channel": 512},
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, ensure_ascii=False))
    parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    # KModel loads its weights in its constructor: build one from a file of freshly initialised
    # components first, as a model made from the config alone would be.
    model = _bare_kokoro(KModel, config)
    torch.save({part: getattr(model, part).state_dict() for part in parts}, out / "kokoro-v1_0.pth")
    (out / "voices").mkdir()
    for pack in KOKORO_PACKS:
        torch.save(torch.randn(510, 1, 256) * 0.1, out / "voices" / f"{pack}.pt")


def _bare_kokoro(kmodel: Any, config: dict[str, Any]) -> Any:
    """A KModel with random weights: its constructor is given an empty checkpoint."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        return kmodel(repo_id="hexgrad/Kokoro-82M", config=config, model=str(empty))


BUILDERS: dict[str, Callable[[Path], None]] = {
    "ltx-video": build_ltx,
    "ltx-2": build_ltx2,
    "wan": build_wan,
    "wan-i2v": build_wan_i2v,
    "cogvideox": build_cogvideox,
    "cogvideox-2b": build_cogvideox,
    "cogvideox-i2v": build_cogvideox_i2v,
    "svd": build_svd,
    "keyframes": build_keyframes,
    "vits": build_vits,
    "xtts": build_xtts,
    "wav2lip": build_wav2lip,
    "musetalk": build_musetalk,
    "fomm": build_fomm,
    "kokoro": build_kokoro,
    "stable-audio": build_stable_audio,
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

"""The engine table agrees with the engine classes it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.settings import Settings
from models.errors import ModelUnavailable
from models.registry import (
    CPU_DEFAULTS,
    ENGINES,
    Capability,
    EngineInfo,
    Use,
    build_engine,
    configured_engines,
    engine_info,
)


@pytest.mark.parametrize("info", ENGINES, ids=lambda info: info.deployment)
def test_import_path_names_an_engine_class(info: EngineInfo) -> None:
    cls = info.load_class()
    assert isinstance(cls, type)
    assert all(isinstance(getattr(cls, field, None), str) for field in ("name", "version"))


@pytest.mark.parametrize("info", ENGINES, ids=lambda info: info.deployment)
def test_licence_is_the_engine_class_licence(info: EngineInfo) -> None:
    assert info.licence == info.load_class().licence


def test_deployment_names_are_unique() -> None:
    assert len({info.deployment for info in ENGINES}) == len(ENGINES)


def test_cpu_defaults_need_no_gpu_and_no_model_folder() -> None:
    defaults = [engine_info(capability, name) for capability, name in CPU_DEFAULTS.items()]
    assert all(not info.gpu and info.model_folder is None for info in defaults)


def test_unset_engine_settings_choose_the_cpu_defaults() -> None:
    assert configured_engines(Settings(_env_file=None)) == CPU_DEFAULTS


def test_a_set_engine_setting_chooses_that_engine() -> None:
    settings = Settings(voice_engine="openai", _env_file=None)
    assert configured_engines(settings) == {**CPU_DEFAULTS, Capability.voice: "openai"}


def test_engines_that_load_weights_name_their_model_folder() -> None:
    """Every GPU engine loads from a folder under the models dir; hosted ones need none."""
    assert all(info.model_folder for info in ENGINES if info.gpu)


def test_a_missing_model_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=f"model folder {tmp_path / 'ltx-video'} does not"):
        build_engine(engine_info("video", "ltx"), tmp_path, {})


@pytest.mark.parametrize("info", ENGINES, ids=lambda info: info.deployment)
def test_every_engine_licence_has_its_terms(info: EngineInfo) -> None:
    terms = info.terms
    assert (terms.revenue_cap_usd is not None) == (terms.use is Use.revenue_cap)


def test_engines_with_a_separate_image_model_take_images() -> None:
    assert all(info.takes_image for info in ENGINES if info.image_folder is not None)

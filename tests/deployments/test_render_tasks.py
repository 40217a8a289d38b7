"""Only engine replicas hold GPUs: no task of the render DAG asks for one, so a render waiting
on a stage (or on an engine scaling up from zero) never keeps a GPU from the engines."""

from __future__ import annotations

from ray.remote_function import RemoteFunction

from pipeline.render import dag as render


def test_no_render_task_asks_for_a_gpu() -> None:
    tasks = {name: f for name, f in vars(render).items() if isinstance(f, RemoteFunction)}
    assert {"voice_stage", "video_stage", "segment_stage", "clip_stage", "assemble_stage"} <= set(
        tasks
    )
    holding_gpus = [name for name, f in tasks.items() if f._default_options.get("num_gpus")]
    assert holding_gpus == []

"""Rendering: the film spec, the Ray DAG of stages, and the media work (narration, composition,
assembly, subtitles, thumbnails, storyboard, stage cache, uploads)."""

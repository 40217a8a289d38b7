"""The render pipeline: the film spec, the Ray DAG of stages, and the media work (narration,
audio mix, clip composition, assembly, subtitles, thumbnails, storyboard)."""

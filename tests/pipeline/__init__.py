"""Tests of the pipeline: the film spec and the media stages."""

"""Kept for the imports that still name it: the typed streams live in :mod:`streams._operators`."""

from ._operators import TypedStreams as TypedStreams

__all__ = ["TypedStreams"]

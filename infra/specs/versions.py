"""The pins moved to `infra/versions.py` (one pins module); re-exported for the specs and their users."""

from __future__ import annotations

from infra.versions import CHARTS, IMAGES, ChartPin, ImagePin

__all__ = ["CHARTS", "IMAGES", "ChartPin", "ImagePin"]

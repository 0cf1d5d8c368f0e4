"""Every pinned chart and image is exact: no `latest`, no floating tag."""

from __future__ import annotations

import re

import pytest

from infra.versions import CHARTS, EXACT_TAG, FLOATING_TAGS, IMAGES


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_tags_are_exact(name: str) -> None:
    tag = IMAGES[name].tag
    assert tag.lower() not in FLOATING_TAGS
    assert not any(word in tag.lower().split("-") for word in FLOATING_TAGS), tag
    assert EXACT_TAG.fullmatch(tag), f"{name}: {tag} is not an exact version"
    assert ":" not in IMAGES[name].repository and "@" not in IMAGES[name].repository


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_chart_versions_are_exact_semver(name: str) -> None:
    pin = CHARTS[name]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin.version), f"{name}: {pin.version}"
    assert pin.repository.startswith(("https://", "oci://"))


def test_floating_tags_are_caught() -> None:
    for tag in ("latest", "8-alpine", "3", "main", "server", "v1"):
        assert not EXACT_TAG.fullmatch(tag) or tag in FLOATING_TAGS, tag


def test_images_render_as_references() -> None:
    assert IMAGES["kong"].ref.startswith("kong:3.9.")
    assert IMAGES["keycloak"].tag.startswith("26.")

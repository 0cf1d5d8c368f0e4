"""The route table itself."""

from __future__ import annotations

from apps.gateway.routes import APPS, ROUTES, AppName, match


def test_longest_prefix_wins_and_segments_are_whole() -> None:
    assert match("/v1/auth/guest-login") is not None
    guest = match("/v1/auth/guest-login")
    assert guest is not None and guest.auth is False
    keys = match("/v1/auth/api-keys")
    assert keys is not None and keys.prefix == "/v1/auth" and keys.auth is True
    assert match("/v1/mediax") is None
    media = match("/v1/media/jan_1/content")
    assert media is not None and media.app is AppName.MEDIA_API
    presign = match("/v1/media/jan_1/presign")
    assert presign is not None and presign.app is AppName.MEDIA_API
    project = match("/v1/projects/proj_1")
    assert project is not None and project.app is AppName.LLM_API and project.auth is True
    model = match("/v1/models/local/smollm2-135m-instruct")
    assert model is not None and model.app is AppName.LLM_API


def test_every_app_has_a_public_route_and_prefixes_are_unique() -> None:
    prefixes = [route.prefix for route in ROUTES]
    assert len(prefixes) == len(set(prefixes))
    assert {route.app for route in ROUTES if route.public} == set(AppName)
    assert set(APPS) == set(AppName)


def test_streaming_routes_allow_long_silences() -> None:
    for route in ROUTES:
        if route.streaming:
            assert route.timeout_seconds >= 180

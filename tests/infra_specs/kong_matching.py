"""Kong's routing rules for the config `infra.specs.kong` emits: the tests' oracle for which app Kong
sends a path to (a model of Kong, so it lives with the tests, not in the program)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from apps.gateway.routes import AppName


def kong_route_target(config: Mapping[str, Any], path: str) -> AppName | None:
    """The app Kong proxies `path` to under `config`, or None when no route matches.

    Kong's rules for what `kong_config` emits: a `~` path is a regex anchored at the start of the
    (normalized) request path, a plain path a string prefix; among matching routes the highest
    `regex_priority` wins, then the longest path. Two routes still tied would make Kong's choice depend
    on creation order, which we refuse as ambiguous.
    """
    candidates: list[tuple[int, int, str, Mapping[str, Any]]] = []
    for service in config.get("services", []):
        for route in service.get("routes", []):
            for kong_path in route.get("paths", []):
                if _kong_path_matches(kong_path, path):
                    rank = (int(route.get("regex_priority", 0)), len(kong_path))
                    candidates.append((*rank, route["name"], service))
    if not candidates:
        return None
    candidates.sort(key=lambda candidate: candidate[:2], reverse=True)
    if len(candidates) > 1 and candidates[0][:2] == candidates[1][:2]:
        raise ValueError(f"ambiguous Kong routes for {path}: {candidates[0][2]}, {candidates[1][2]}")
    return _service_app(candidates[0][3])


def _kong_path_matches(kong_path: str, path: str) -> bool:
    if kong_path.startswith("~"):
        return re.match(kong_path[1:], path) is not None
    return path.startswith(kong_path)


def _service_app(service: Mapping[str, Any]) -> AppName:
    apps = [tag.removeprefix("app:") for tag in service.get("tags", []) if tag.startswith("app:")]
    if len(apps) != 1:
        raise ValueError(f"Kong service {service.get('name')} names no single app")
    return AppName(apps[0])

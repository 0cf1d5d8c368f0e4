"""Kubernetes manifests of a render: charts rendered offline, objects collected, strictly validated.

Decisions:
- Charts are rendered by `infra.helm_render`, both for `helm.v3.Chart` invokes and to expand
  `helm.v3.Release` resources, whose objects Pulumi itself never sees.
- Validation uses the Kubernetes JSON schemas for the stack's cluster version in strict mode (unknown
  fields are errors). Custom resources are validated against the CRD in the same render (the render
  holds every CRD the charts ship), made strict the same way (`strict_schema`); our own objects
  (labelled `app.kubernetes.io/part-of: jan`) must also pass our stricter schema of the part we use
  in `infra/crd_schemas/`, which also stands in when the render has no CRD for a kind. A kind with no
  schema at all is an error, so nothing ships unchecked.
- Secret payloads never reach the files: Secret `data`/`stringData` values are replaced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml
from referencing import Registry, Resource

from infra.content_cache import cached_text

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available: CRDs are large
REDACTED = "[redacted]"
_REDACTED_BYTES = "W3JlZGFjdGVkXQ=="  # base64 of REDACTED, so `data` stays well-formed


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object and the file it is written to."""

    path: str
    body: dict[str, Any]


def manifest_path(namespace: str | None, kind: str, name: str) -> str:
    """The file an object is written to, `<namespace or _cluster>/<kind>-<name>.yaml`; with `*` in
    `name` (or `namespace`), the glob pattern of such files."""
    return f"{namespace or '_cluster'}/{kind.lower()}-{name}.yaml"


def to_manifests(objects: Iterable[dict[str, Any]]) -> list[Manifest]:
    """File paths from `manifest_path` (a `-2`, `-3`… suffix for a repeated one), in path order."""
    manifests: dict[str, Manifest] = {}
    for body in objects:
        body = redact(body)
        meta = body.get("metadata") or {}
        kind = str(body.get("kind", "unknown"))
        stem = manifest_path(meta.get("namespace"), kind, str(meta.get("name", "unnamed")))
        stem = stem.removesuffix(".yaml")
        path, index = f"{stem}.yaml", 1
        while path in manifests:
            index += 1
            path = f"{stem}-{index}.yaml"
        manifests[path] = Manifest(path, body)
    return [manifests[path] for path in sorted(manifests)]


def write(manifests: Iterable[Manifest], directory: Path) -> None:
    for manifest in manifests:
        target = directory / manifest.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_yaml(manifest.body))


def _yaml(body: dict[str, Any]) -> str:
    def dump() -> str:
        return yaml.dump(body, Dumper=_Dumper, sort_keys=True)

    if body.get("kind") != "CustomResourceDefinition":
        return dump()
    # Upstream CRDs are nine tenths of a render's bytes and change only with a chart pin: printed once.
    source = json.dumps(body, sort_keys=True)
    return cached_text(f"crd-yaml-{yaml.__version__}-{_Dumper.__name__}", source, dump)


def validate(manifests: Iterable[Manifest], kubernetes_version: str) -> list[str]:
    """Every problem as `path: message`; empty when all objects are valid."""
    manifests = list(manifests)
    crds = _crd_validators(manifest.body for manifest in manifests)
    errors = []
    for manifest in manifests:
        problem = _problem(manifest.body, f"{kubernetes_version}.0", crds)
        if problem:
            errors.append(f"{manifest.path}: {problem}")
    return errors


def _problem(body: dict[str, Any], version: str, crds: Mapping[tuple[str, str], Any]) -> str | None:
    body = _pruned(body)
    kind = (str(body.get("apiVersion")), str(body.get("kind")))
    builtin = _builtin_validator(version, *kind)
    if builtin is not None:
        error = jsonschema.exceptions.best_match(builtin.iter_errors(body))
        return _first_line(error) if error is not None else None
    validators = [validator for validator in (crds.get(kind), _ours(body, kind)) if validator]
    if not validators:
        return f"no schema for {'/'.join(kind)} in Kubernetes {version} or in the render's CRDs"
    for validator in validators:
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        if error is not None:
            return _first_line(error)
    return None


def _pruned(value: Any) -> Any:
    """The object as the API server decodes it: a field set to null is a field not set (charts write
    `postgresql:` with nothing under it; CRD schemas prune such nulls unless `nullable`)."""
    if isinstance(value, dict):
        return {key: _pruned(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def _ours(body: dict[str, Any], kind: tuple[str, str]) -> Any:
    """Our strict schema of the part we use applies to our own objects (and to any object whose CRD
    the render lacks); upstream charts' objects answer to their CRD alone."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return _our_crd_validators().get(kind) if labels.get("app.kubernetes.io/part-of") == "jan" else None


@cache
def _builtin_validator(version: str, api_version: str, kind: str) -> Any:
    """kubernetes-validate's strict schema of a built-in kind (None for a custom one), compiled once.

    `kubernetes_validate.validate()` re-reads its schema files (the definitions file is megabytes) on
    every call; this builds the same validator from the same files once per kind, keeping the render
    fast. The schema choice is the library's: the newest schema set not newer than the cluster.
    """
    wanted = kubernetes_validate.utils.major_minor(version)
    known = [v for v in kubernetes_validate.utils.all_versions() if _minor_key(v) <= _minor_key(wanted)]
    schema_dir = f"kubernetes-json-schema/v{known[-1]}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kubernetes_validate.utils.schema_contents(
            f"{schema_dir}/{kind.lower()}-{group_version}.json", version
        )
    except FileNotFoundError:
        return None
    definitions = _definitions(schema_dir, version)
    registry = definitions @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _definitions(schema_dir: str, version: str) -> Any:
    return Resource.from_contents(
        kubernetes_validate.utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    )


def _minor_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])


@cache
def _our_crd_validators() -> dict[tuple[str, str], Any]:
    validators = {}
    for path in sorted((Path(__file__).parent / "crd_schemas").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        kind = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        validators[kind] = jsonschema.Draft7Validator(schema)
    return validators


def _crd_validators(bodies: Iterable[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """A strict validator per custom kind: the render's CRDs first, our schemas where it has none."""
    validators = dict(_our_crd_validators())
    for body in bodies:
        if body.get("kind") != "CustomResourceDefinition":
            continue
        spec = body.get("spec", {})
        for version in spec.get("versions", []):
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                kind = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                validators[kind] = jsonschema.Draft7Validator(strict_schema(schema, root=True))
    return validators


def strict_schema(node: Any, *, root: bool = False) -> Any:
    """An OpenAPI v3 CRD schema as strict JSON Schema: unknown fields are errors (the API server's
    `fieldValidation=Strict`) except under `x-kubernetes-preserve-unknown-fields`; `nullable` allows
    null; embedded resources and the root accept `apiVersion`, `kind` and `metadata`."""
    if not isinstance(node, dict):
        return node
    strict = dict(node)
    properties = {key: strict_schema(value) for key, value in (node.get("properties") or {}).items()}
    if root or node.get("x-kubernetes-embedded-resource"):
        for key, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
            properties.setdefault(key, {"type": kind})
    if properties:
        strict["properties"] = properties
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            strict[key] = strict_schema(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            strict[key] = [strict_schema(item) for item in node[key]]
    if (
        properties
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        strict["type"] = [node["type"], "null"]
    return strict


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    path = "/".join(str(part) for part in getattr(exc, "absolute_path", []) or [])
    line = str(message).splitlines()[0]
    return f"{path}: {line}" if path else line


_WEBHOOKS = frozenset({"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"})


def redact(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("kind") in _WEBHOOKS:
        # A chart-generated CA (genCA) differs on every render; the cluster gets its own at install.
        webhooks = [
            {**hook, "clientConfig": {**hook["clientConfig"], "caBundle": _REDACTED_BYTES}}
            if (hook.get("clientConfig") or {}).get("caBundle")
            else hook
            for hook in body.get("webhooks") or []
        ]
        return {**body, "webhooks": webhooks}
    if body.get("kind") != "Secret":
        return body
    redacted = dict(body)
    if isinstance(body.get("data"), dict):
        redacted["data"] = dict.fromkeys(body["data"], _REDACTED_BYTES)
    if isinstance(body.get("stringData"), dict):
        redacted["stringData"] = dict.fromkeys(body["stringData"], REDACTED)
    return redacted

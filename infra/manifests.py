"""Kubernetes manifests of a render: charts rendered offline, objects collected, strictly validated.

Decisions:
- Charts are rendered with helm-python-sdk (no helm binary), both for `helm.v3.Chart` invokes and to
  expand `helm.v3.Release` resources, whose objects Pulumi itself never sees.
- Like Pulumi's own `helm template`, namespaced objects without a namespace get the release's.
- Validation uses the Kubernetes JSON schemas for the stack's cluster version in strict mode (unknown
  fields are errors). Custom resources are validated against the CRD in the same render, or, when the
  CRD comes with an upstream release the render cannot expand (ServiceMonitor, PrometheusRule,
  ScaledObject), against our strict schema of the part we use in `infra/crd_schemas/`; a kind with no
  schema at all is an error, so nothing ships unchecked.
- Secret payloads never reach the files: Secret `data`/`stringData` values are replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

REDACTED = "[redacted]"
_REDACTED_BYTES = "W3JlZGFjdGVkXQ=="  # base64 of REDACTED, so `data` stays well-formed
_CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "CSIDriver",
        "VolumeSnapshotClass",
    }
)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object and the file it is written to."""

    path: str
    body: dict[str, Any]


def render_chart(
    directory: str, values: Mapping[str, Any], release_name: str, namespace: str | None
) -> list[dict[str, Any]]:
    """What `helm template` would produce, as objects, in a stable order (test hooks left out)."""
    with helm_python.Chart.load(directory) as chart:
        files = chart.render(dict(values), name=release_name, namespace=namespace or "default")
    objects = []
    for filename in sorted(files):
        if not filename.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(files[filename]):
            if not isinstance(document, dict) or _is_test_hook(document):
                continue
            if namespace and document.get("kind") not in _CLUSTER_SCOPED:
                document.setdefault("metadata", {}).setdefault("namespace", namespace)
            objects.append(document)
    return objects


def to_manifests(objects: Iterable[dict[str, Any]]) -> list[Manifest]:
    """File paths `<namespace or _cluster>/<kind>-<name>.yaml`, unique, in path order."""
    manifests: dict[str, Manifest] = {}
    for body in objects:
        body = redact(body)
        meta = body.get("metadata") or {}
        kind = str(body.get("kind", "unknown")).lower()
        stem = f"{meta.get('namespace') or '_cluster'}/{kind}-{meta.get('name', 'unnamed')}"
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
        target.write_text(yaml.safe_dump(manifest.body, sort_keys=True))


def validate(manifests: Iterable[Manifest], kubernetes_version: str) -> list[str]:
    """Every problem as `path: message`; empty when all objects are valid."""
    manifests = list(manifests)
    crds = _crd_schemas(manifest.body for manifest in manifests)
    errors = []
    for manifest in manifests:
        problem = _problem(manifest.body, f"{kubernetes_version}.0", crds)
        if problem:
            errors.append(f"{manifest.path}: {problem}")
    return errors


def _problem(
    body: dict[str, Any], version: str, crds: Mapping[tuple[str, str], dict[str, Any]]
) -> str | None:
    try:
        kubernetes_validate.validate(body, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return _first_line(exc)
    except kubernetes_validate.SchemaNotFoundError:
        schema = crds.get((str(body.get("apiVersion")), str(body.get("kind"))))
        if schema is None:
            kind = f"{body.get('apiVersion')}/{body.get('kind')}"
            return f"no schema for {kind} in Kubernetes {version} or in the render's CRDs"
        try:
            jsonschema.validate(body, schema)
        except jsonschema.ValidationError as exc:
            return _first_line(exc)
    return None


@cache
def _our_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in sorted((Path(__file__).parent / "crd_schemas").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        kind = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        schemas[kind] = schema
    return schemas


def _crd_schemas(bodies: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    schemas = dict(_our_crd_schemas())
    for body in bodies:
        if body.get("kind") != "CustomResourceDefinition":
            continue
        spec = body.get("spec", {})
        for version in spec.get("versions", []):
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    path = "/".join(str(part) for part in getattr(exc, "absolute_path", []) or [])
    line = str(message).splitlines()[0]
    return f"{path}: {line}" if path else line


def _is_test_hook(document: dict[str, Any]) -> bool:
    hooks = ((document.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(hook.strip().startswith("test") for hook in str(hooks).split(","))


def redact(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("kind") != "Secret":
        return body
    redacted = dict(body)
    if isinstance(body.get("data"), dict):
        redacted["data"] = dict.fromkeys(body["data"], _REDACTED_BYTES)
    if isinstance(body.get("stringData"), dict):
        redacted["stringData"] = dict.fromkeys(body["stringData"], REDACTED)
    return redacted

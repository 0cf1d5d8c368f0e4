"""Charts rendered offline as a cluster install would render them (helm-python-sdk, no helm binary).

Decisions:
- `helm_python.Chart.render()` exposes no `kube_version` or `api_versions`, yet many charts gate
  objects on `.Capabilities` (a ServiceMonitor only when `monitoring.coreos.com/v1` exists, a
  PodDisruptionBudget's API version by Kubernetes version). The native call underneath accepts both,
  so `template()` is the ONE place that calls that private entry point; its test pins the behaviour,
  so an SDK upgrade that changes it fails there first.
- Like Helm's install, what a chart ships under `crds/` (its own and its enabled subcharts') is part
  of the release: `render_chart()` returns those CRDs first, then the templates' objects.
- Like Pulumi's `helm template`, namespaced objects without a namespace get the release's; test hooks
  (`helm.sh/hook: test…`) are left out, since `helm install` never creates them.
"""

from __future__ import annotations

import copy
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python
import yaml
from helm_python import _native

from infra.content_cache import cached_text

CLUSTER_SCOPED = frozenset(
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
        "ClusterTriggerAuthentication",
        "ClusterCloudEventSource",
        "ClusterImageCatalog",
    }
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the cluster tells Helm: its version (`1.33`) and the API versions it serves beyond the
    built-in ones (`group/version` and `group/version/Kind`, as Helm's `--api-versions` takes them)."""

    kube_version: str
    api_versions: frozenset[str] = frozenset()

    def with_crds(self, crds: Iterable[Mapping[str, Any]]) -> Capabilities:
        return Capabilities(self.kube_version, self.api_versions | frozenset(crd_api_versions(crds)))


def template(
    chart: helm_python.Chart,
    values: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    capabilities: Capabilities | None,
) -> dict[str, str]:
    """`helm template` of a loaded chart: template path -> rendered text."""
    options: dict[str, Any] = {"name": name, "namespace": namespace}
    if capabilities is not None:
        version = capabilities.kube_version.removeprefix("v")
        # A cluster reports a full version (`v1.33.0`); `1.33` from the stack config means its .0.
        options["kube_version"] = f"v{version}.0" if version.count(".") == 1 else f"v{version}"
        options["api_versions"] = sorted(capabilities.api_versions)
    rendered = _native.call_string("helm_render", chart._raw(), json.dumps(dict(values)), json.dumps(options))
    files: dict[str, str] = json.loads(rendered)
    return files


@dataclass(frozen=True, slots=True)
class ReleaseRender:
    """One release rendered: the CRDs its chart ships and its templates' output, parsed on demand
    (parsing is most of the cost: CRDs are large)."""

    crds: list[dict[str, Any]]
    files: dict[str, str]
    namespace: str | None

    def template_crds(self) -> list[dict[str, Any]]:
        """Only the CRDs among the templates' objects (what capabilities need), cheaply."""
        return [
            document
            for filename in sorted(self.files)
            if "CustomResourceDefinition" in self.files[filename]
            for document in _file_documents(self.files[filename])
            if document.get("kind") == "CustomResourceDefinition"
        ]

    def objects(self) -> list[dict[str, Any]]:
        """Every object, in a stable order: the shipped CRDs, then the templates' by file name."""
        objects = list(self.crds)
        for filename in sorted(self.files):
            if filename.endswith((".yaml", ".yml")):
                objects += _file_documents(self.files[filename])
        for document in objects:
            if self.namespace and document.get("kind") not in CLUSTER_SCOPED:
                document.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        return objects


def render_release(
    source: str | Path,
    values: Mapping[str, Any],
    release_name: str,
    namespace: str | None,
    capabilities: Capabilities | None = None,
) -> ReleaseRender:
    """`helm template` of the chart at `source` (a directory or `.tgz`), unparsed."""
    with helm_python.Chart.load(str(source)) as chart:
        files = template(
            chart, values, name=release_name, namespace=namespace or "default", capabilities=capabilities
        )
        crds = shipped_crds(chart, values)
    return ReleaseRender(crds, files, namespace)


def render_chart(
    source: str | Path,
    values: Mapping[str, Any],
    release_name: str,
    namespace: str | None,
    capabilities: Capabilities | None = None,
) -> list[dict[str, Any]]:
    """The objects a release of the chart at `source` creates (see `ReleaseRender.objects`)."""
    return render_release(source, values, release_name, namespace, capabilities).objects()


def shipped_crds(chart: helm_python.Chart, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CRDs under `crds/` of the chart and of each subchart whose condition holds.

    Parsed once per file content and shared between renders: nothing changes a CRD after parsing
    (cluster-scoped objects get no namespace).
    """
    merged = chart.merge_values(dict(values))
    conditions = {
        str(dependency.get("alias") or dependency["name"]): str(dependency.get("condition") or "")
        for dependency in chart.metadata.get("dependencies") or []
    }
    crds = []
    for entry in sorted(chart.crds, key=lambda item: item["filename"]):
        parts = entry["filename"].split("/")
        subchart = parts[2] if len(parts) > 3 and parts[1] == "charts" else None
        if subchart is not None and not _condition_holds(conditions.get(subchart, ""), merged):
            continue
        # Only CRDs: a crds/ directory may also carry a kustomization.yaml, which Helm's packaging
        # leaves out (.helmignore) and which is no object of the release.
        crds += [crd for crd in _parsed_crds(entry["data"]) if crd.get("kind") == "CustomResourceDefinition"]
    return crds


@lru_cache(maxsize=256)
def _parsed_crds(text: str) -> list[dict[str, Any]]:
    """Documents of a file that holds CRDs, parsed once per content, also across runs: a JSON copy in
    the cache (`infra.content_cache`) loads in a fraction of the YAML parse (the Prometheus
    Operator's CRDs are megabytes). Shared: callers must not change what they get.

    The cache holds the parse alone, keyed by what it depends on: the YAML library, its loader and
    our resolvers (`_LOADER_VERSION`); which documents are kept (`_kept`) is decided after it."""
    key = f"parsed-yaml-{_LOADER_VERSION}-{yaml.__version__}-{_Loader.__mro__[1].__name__}"
    parsed = json.loads(cached_text(key, text, lambda: json.dumps(list(yaml.load_all(text, Loader=_Loader)))))
    return _kept(parsed)


def _file_documents(text: str) -> list[dict[str, Any]]:
    """A rendered file's documents; one holding CRDs comes from the shared parse, its other objects
    copied, since `ReleaseRender.objects` gives them a namespace."""
    if "CustomResourceDefinition" not in text:
        return _documents(text)
    return [
        document if document.get("kind") == "CustomResourceDefinition" else copy.deepcopy(document)
        for document in _parsed_crds(text)
    ]


@lru_cache(maxsize=64)
def gates_on_api_versions(source: str | Path) -> bool:
    """Whether any template of the chart at `source`, subcharts included, asks for the cluster's API
    versions (a chart packed inside the archive counts as asking: it is not looked into)."""
    path = Path(source)
    if path.is_dir():
        return any(
            "APIVersions" in file.read_text(errors="replace") or file.suffix == ".tgz"
            for file in path.rglob("*")
            if file.is_file() and ("templates" in file.parts or file.suffix == ".tgz")
        )
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".tgz"):
                return True
            if member.isfile() and "/templates/" in member.name:
                handle = archive.extractfile(member)
                if handle is not None and b"APIVersions" in handle.read():
                    return True
    return False


def crd_api_versions(objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """`group/version` and `group/version/Kind` of every served version of every CRD in `objects`."""
    found = set()
    for body in objects:
        if body.get("kind") != "CustomResourceDefinition":
            continue
        spec = body.get("spec") or {}
        for version in spec.get("versions") or []:
            if version.get("served", True):
                group_version = f"{spec['group']}/{version['name']}"
                found |= {group_version, f"{group_version}/{spec['names']['kind']}"}
    return found


def _condition_holds(condition: str, values: Mapping[str, Any]) -> bool:
    """Helm's rule: the first of the comma-separated paths that resolves to a bool decides; none: on."""
    for path in filter(None, (part.strip() for part in condition.split(","))):
        node: Any = values
        for key in path.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, bool):
            return node
    return True


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as Kubernetes reads it: a plain `=` is the string "=", not YAML 1.1's `value` tag (CRD
    enums of operators list it); libyaml when available, since CRDs are large."""


# Part of the parse cache's key (`_parsed_crds`): a change to `_Loader` must change it.
_LOADER_VERSION = 1
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _documents(text: str) -> list[dict[str, Any]]:
    return _kept(yaml.load_all(text, Loader=_Loader))


def _kept(documents: Iterable[Any]) -> list[dict[str, Any]]:
    """The objects among a file's documents: not empty, not a `helm test` hook."""
    return [
        document
        for document in documents
        if isinstance(document, dict) and document and not _is_test_hook(document)
    ]


def _is_test_hook(document: dict[str, Any]) -> bool:
    hooks = ((document.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(hook.strip().startswith("test") for hook in str(hooks).split(","))

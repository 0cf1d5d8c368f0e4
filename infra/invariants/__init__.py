"""Whole-render invariants: properties every stack's full render must have, as plain functions.

Each check takes a `RenderView` (the resources of one render: our objects, the objects inside every
Helm release, the releases themselves) and returns `Finding`s; no finding means the invariant holds.
The tests run them over the dev, staging and prod renders (`tests/infra/invariants/`).

Pods that operators create at run time are not in any render, yet Services, ServiceMonitors and
references point at them; `infra.invariants.operators` models the few the platform runs (the
Prometheus Operator's Prometheus and Alertmanager, CloudNativePG's instances) from the custom
resources that ask for them, so those pods are checked like the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation: which invariant, which object, what is wrong."""

    check: str
    subject: str
    problem: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.problem}"


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """The pods one workload (or one operator-managed resource) runs."""

    owner: str
    """`Kind namespace/name` of the workload."""
    namespace: str
    labels: Mapping[str, str]
    spec: Mapping[str, Any]
    annotations: Mapping[str, str]
    modelled: bool = False
    """True for pods an operator creates (modelled, not rendered)."""

    def containers(self, *, init: bool = True) -> list[Mapping[str, Any]]:
        found = list(self.spec.get("containers") or [])
        if init:
            found += list(self.spec.get("initContainers") or [])
        return found

    def ports(self) -> list[Mapping[str, Any]]:
        """Declared container ports, restartable init containers (sidecars) included."""
        ports = [port for container in self.containers(init=False) for port in container.get("ports") or []]
        for container in self.spec.get("initContainers") or []:
            if container.get("restartPolicy") == "Always":
                ports += container.get("ports") or []
        return ports


class RenderView:
    """One render's resources, indexed for the checks."""

    def __init__(self, stack: str, resources: Iterable[dict[str, Any]], kubernetes_version: str) -> None:
        self.stack = stack
        self.resources = list(resources)
        self.kubernetes_version = kubernetes_version

    @classmethod
    def load(cls, out: Path) -> RenderView:
        """A render written by `jan-server render` (its `resources.json`)."""
        document = json.loads((out / "resources.json").read_text())
        return cls(document["stack"], document["resources"], document["kubernetesVersion"])

    @cached_property
    def objects(self) -> list[dict[str, Any]]:
        return [
            item["inputs"]
            for item in self.resources
            if item["type"].startswith("kubernetes:")
            and not item["type"].startswith(("kubernetes:helm.sh/", "pulumi:providers:"))
            and isinstance(item.get("inputs"), dict)
            and "kind" in item["inputs"]
        ]

    @cached_property
    def releases(self) -> list[dict[str, Any]]:
        return [item for item in self.resources if item["type"] == RELEASE_TYPE]

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [body for body in self.objects if body.get("kind") in kinds]

    def find(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        for body in self.of_kind(kind):
            meta = body.get("metadata") or {}
            if meta.get("name") == name and (namespace is None or meta.get("namespace") == namespace):
                return body
        return None

    @cached_property
    def namespaces(self) -> dict[str, Mapping[str, str]]:
        """Namespaces the render creates, with their labels."""
        return {
            str(body["metadata"]["name"]): (body["metadata"].get("labels") or {})
            for body in self.of_kind("Namespace")
        }

    @cached_property
    def pod_templates(self) -> list[PodTemplate]:
        from infra.invariants.operators import operator_pods  # noqa: PLC0415 - it imports this module

        return [*_workload_pods(self.objects), *operator_pods(self)]

    @cached_property
    def services(self) -> list[dict[str, Any]]:
        """The render's Services plus those the cluster or an operator provides (see `operators`)."""
        from infra.invariants.operators import cluster_services  # noqa: PLC0415

        return [*self.of_kind("Service"), *cluster_services(self)]

    def pods_selected(self, namespace: str, selector: Mapping[str, Any]) -> list[PodTemplate]:
        return [
            pod for pod in self.pod_templates if pod.namespace == namespace and selects(selector, pod.labels)
        ]


def name_of(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{body.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (`matchLabels`/`matchExpressions`, or a Service's plain map) against labels.
    An empty selector selects everything; None selects nothing."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(key) == value for key, value in selector.items())
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _workload_pods(objects: Iterable[Mapping[str, Any]]) -> Iterator[PodTemplate]:
    for body in objects:
        kind = body.get("kind")
        if kind not in WORKLOAD_KINDS:
            continue
        meta = body.get("metadata") or {}
        if kind == "Pod":
            template: Mapping[str, Any] = {"metadata": meta, "spec": body.get("spec") or {}}
        elif kind == "CronJob":
            template = ((body.get("spec") or {}).get("jobTemplate") or {}).get("spec", {}).get(
                "template"
            ) or {}
        else:
            template = (body.get("spec") or {}).get("template") or {}
        pod_meta = template.get("metadata") or {}
        yield PodTemplate(
            owner=name_of(body),
            namespace=str(meta.get("namespace") or "default"),
            labels=pod_meta.get("labels") or {},
            spec=template.get("spec") or {},
            annotations=pod_meta.get("annotations") or {},
        )

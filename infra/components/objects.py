"""Kubernetes objects from the pure generators in `infra.specs` (plain dicts) as Pulumi resources.

The generators return manifests as data so they can be tested without Pulumi; this is the one place
that turns such a dict into a typed resource (core and apps kinds) or a `CustomResource` (CRD kinds),
so every object shows up in previews and in the offline render with its full body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.specs.monitoring import monitoring_manifests

_TYPED: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}


def k8s_object(name: str, body: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """One object; `name` is its Pulumi logical name (unique in the stack)."""
    api_version, kind = str(body["apiVersion"]), str(body["kind"])
    fields = {key: value for key, value in body.items() if key not in ("apiVersion", "kind")}
    typed = _TYPED.get((api_version, kind))
    if typed is not None:
        resource: pulumi.CustomResource = typed(name, opts=opts, **fields)
        return resource
    return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, opts=opts, **fields)


def object_name(body: Mapping[str, Any]) -> str:
    """`<namespace>-<kind>-<name>`, a logical name that is unique for distinct objects."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace") or "cluster"
    return f"{namespace}-{str(body['kind']).lower()}-{meta['name']}"


def monitoring_objects(
    name: str,
    source: str,
    namespace: str,
    opts: pulumi.ResourceOptions,
    *,
    crds: Sequence[pulumi.Resource] = (),
) -> list[pulumi.CustomResource]:
    """The dashboards and alert rules of a metric source, for the component that runs the source
    (`infra.specs.monitoring`); the rules also wait for `crds` (the Prometheus Operator's)."""
    after_crds = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(crds)))
    return [
        k8s_object(
            f"{name}-{object_name(body)}", body, after_crds if body["kind"] == "PrometheusRule" else opts
        )
        for body in monitoring_manifests(source, namespace)
    ]

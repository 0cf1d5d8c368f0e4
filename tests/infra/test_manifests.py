"""Strict validation of custom resources: against a CRD in the same render, or an error."""

from __future__ import annotations

from typing import Any

from infra.manifests import Manifest, manifest_path, to_manifests, validate

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusters.postgresql.example.com"},
    "spec": {
        "group": "postgresql.example.com",
        "scope": "Namespaced",
        "names": {"kind": "Cluster", "plural": "clusters", "singular": "cluster"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"instances": {"type": "integer"}},
                                "additionalProperties": False,
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _cluster(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.example.com/v1",
        "kind": "Cluster",
        "metadata": {"name": "db", "namespace": "jan"},
        "spec": spec,
    }


def test_custom_resources_are_checked_against_their_crd() -> None:
    good = to_manifests([CRD, _cluster({"instances": 3})])
    assert validate(good, "1.34") == []
    bad = to_manifests([CRD, _cluster({"instances": "three"})])
    (error,) = validate(bad, "1.34")
    assert error.startswith("jan/cluster-db.yaml: spec/instances: 'three' is not of type 'integer'")


def test_a_kind_without_any_schema_is_an_error() -> None:
    (error,) = validate([Manifest("jan/cluster-db.yaml", _cluster({}))], "1.34")
    assert "no schema for postgresql.example.com/v1/Cluster" in error


def test_secret_payloads_are_redacted_and_paths_are_unique() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "jan"},
        "data": {"k": "c2VjcmV0"},
    }
    twin = {**secret, "stringData": {"k": "plain"}}
    found = {manifest.path: manifest.body for manifest in to_manifests([secret, twin])}
    assert found["jan/secret-s.yaml"]["data"] == {"k": "W3JlZGFjdGVkXQ=="}
    assert found["jan/secret-s-2.yaml"]["stringData"] == {"k": "[redacted]"}
    assert validate(to_manifests([secret, twin]), "1.34") == []


def test_files_are_named_by_the_one_naming_helper() -> None:
    namespaced = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "jan"}}
    cluster = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "jan"}}
    paths = [manifest.path for manifest in to_manifests([namespaced, cluster])]
    assert paths == [manifest_path(None, "Namespace", "jan"), manifest_path("jan", "ConfigMap", "a")]
    assert paths == ["_cluster/namespace-jan.yaml", "jan/configmap-a.yaml"]

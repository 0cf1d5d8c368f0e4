"""The platform's rules as plain functions over resource inputs, shared by the policy pack and the tests.

Each rule takes what Pulumi's policy engine hands a policy — a resource's type and inputs, or every
resource of the stack — and returns the violations as sentences (empty when the rule holds). The
pack (`policy/__main__.py`) adapts them to `pulumi_policy`; the tests run them over the offline
render, so `make test` checks every stack file against the same rules `pulumi preview` enforces.

The rules see what the engine sees: our own Kubernetes objects in full, but a Helm release only as its
values (the chart's objects exist only inside the cluster), so the image and load-balancer rules
also read release values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
AWS_PROVIDER = "pulumi:providers:aws"
REQUIRED_TAGS = ("owner", "environment")
PROTECTED_ENVIRONMENTS = frozenset({"prod"})
GPU_TAINT_KEY = "nvidia.com/gpu"
# The AWS Load Balancer Controller is the one controller that reads these (the in-tree provider
# ignores the scheme and target type), so a LoadBalancer Service must speak to it alone.
LOAD_BALANCER_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": None,
    "service.beta.kubernetes.io/aws-load-balancer-scheme": None,
}
_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"})
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.IGNORECASE)
_GPU_INSTANCE = re.compile(r"^(g\d|p\d|gr\d)")


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource as a stack policy sees it: its type, logical name, inputs and provider's inputs."""

    type: str
    name: str
    props: Mapping[str, Any]
    provider_type: str | None = None
    provider_props: Mapping[str, Any] | None = None


# ---- resource rules -------------------------------------------------------------------------------


def no_floating_image_tags(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every image names a fixed version: a tag other than `latest`, or a digest."""
    if resource_type == HELM_RELEASE:
        return [f"release value {path}: {why}" for path, why in _floating_in_values(props.get("values"))]
    if not resource_type.startswith("kubernetes:") or props.get("kind") not in _WORKLOAD_KINDS:
        return []
    return [
        f"container {container.get('name', '?')}: image {container.get('image')!r} {why}"
        for container in _containers(props)
        if (why := _floating(container.get("image")))
    ]


def gpu_node_groups_tainted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A GPU node group repels everything that does not tolerate `nvidia.com/gpu` (NoSchedule)."""
    if resource_type != "aws:eks/nodeGroup:NodeGroup":
        return []
    ami = str(props.get("amiType", ""))
    instances = [str(t) for t in props.get("instanceTypes") or []]
    if "NVIDIA" not in ami and "GPU" not in ami and not any(_GPU_INSTANCE.match(t) for t in instances):
        return []
    for taint in props.get("taints") or []:
        if taint.get("key") == GPU_TAINT_KEY and taint.get("effect") == "NO_SCHEDULE":
            return []
    return [f"GPU node group ({ami}, {', '.join(instances)}) has no {GPU_TAINT_KEY} NO_SCHEDULE taint"]


def rds_hardened(resource_type: str, props: Mapping[str, Any], environment: str) -> list[str]:
    """RDS is encrypted and private everywhere, and cannot be deleted by accident in production."""
    if resource_type not in ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster"):
        return []
    problems = []
    if props.get("storageEncrypted") is not True:
        problems.append("storage is not encrypted (storageEncrypted)")
    if props.get("publiclyAccessible") is True:
        problems.append("the database is publicly accessible")
    if environment in PROTECTED_ENVIRONMENTS and props.get("deletionProtection") is not True:
        problems.append(f"deletion protection is off in {environment}")
    return problems


def load_balancers_annotated(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A LoadBalancer Service carries exactly the annotations the AWS Load Balancer Controller reads."""
    if resource_type == HELM_RELEASE:
        found = _load_balancers_in_values(props.get("values"), "values")
        return [f"release {path}: {why}" for path, annotations in found for why in _lb_problems(annotations)]
    if (
        resource_type != "kubernetes:core/v1:Service"
        or (props.get("spec") or {}).get("type") != "LoadBalancer"
    ):
        return []
    return _lb_problems((props.get("metadata") or {}).get("annotations") or {})


def secrets_not_in_plain_config(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Credentials reach pods from Secrets (`valueFrom.secretKeyRef`), never as literal env values."""
    if not resource_type.startswith("kubernetes:"):
        return []
    if props.get("kind") == "ConfigMap":
        keys = [key for key in (props.get("data") or {}) if _SECRET_NAME.search(key)]
        return [f"ConfigMap key {key} looks like a credential; use a Secret" for key in keys]
    if props.get("kind") not in _WORKLOAD_KINDS:
        return []
    return [
        f"container {container.get('name', '?')}: env {env['name']} is a literal value; use a Secret"
        for container in _containers(props)
        for env in container.get("env") or []
        if _SECRET_NAME.search(str(env.get("name", ""))) and env.get("value")
    ]


# ---- stack rules ----------------------------------------------------------------------------------


def aws_resources_tagged(resources: Sequence[Resource]) -> list[str]:
    """Every AWS resource is created through a provider whose default tags name its owner and environment."""
    problems = []
    for resource in resources:
        if not resource.type.startswith("aws:"):
            continue
        if resource.provider_type != AWS_PROVIDER or resource.provider_props is None:
            problems.append(
                f"{resource.type} {resource.name} uses the default AWS provider (no default tags)"
            )
            continue
        tags = {**_default_tags(resource.provider_props), **(resource.props.get("tags") or {})}
        missing = [tag for tag in REQUIRED_TAGS if not tags.get(tag)]
        if missing:
            problems.append(f"{resource.type} {resource.name} lacks the tags {', '.join(missing)}")
    return problems


def buckets_private_and_encrypted(resources: Sequence[Resource]) -> list[str]:
    """Every S3 bucket has all four public-access blocks and default server-side encryption.

    The settings are separate resources; they belong to a bucket when they reference it by its `bucket`
    name or carry its logical name (our components name a bucket's settings after the bucket).
    """
    buckets = [r for r in resources if r.type in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")]
    blocks = [r for r in resources if r.type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]
    encryption = [r for r in resources if r.type.startswith("aws:s3/bucketServerSideEncryptionConfiguration")]
    problems = []
    for bucket in buckets:
        block = next((b for b in blocks if _settings_of(b, bucket)), None)
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        if block is None or not all(block.props.get(flag) is True for flag in flags):
            problems.append(f"bucket {bucket.name}: public access is not fully blocked")
        sse = next((e for e in encryption if _settings_of(e, bucket)), None)
        if sse is None or not any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for rule in sse.props.get("rules") or []
        ):
            problems.append(f"bucket {bucket.name}: no default server-side encryption")
    return problems


# ---- helpers --------------------------------------------------------------------------------------


def _floating(image: Any) -> str | None:
    if not isinstance(image, str) or not image:
        return "is missing"
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return "has no tag"
    return "uses the floating tag latest" if tag == "latest" else None


def _floating_in_values(values: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(values, Mapping):
        tag = values.get("tag")
        if isinstance(tag, str) and tag == "latest":
            yield f"{path}.tag" if path else "tag", "uses the floating tag latest"
        for key, value in values.items():
            child = f"{path}.{key}" if path else str(key)
            if key == "image" and isinstance(value, str) and (why := _floating(value)):
                yield child, f"{value!r} {why}"
            else:
                yield from _floating_in_values(value, child)
    elif isinstance(values, list):
        for index, item in enumerate(values):
            yield from _floating_in_values(item, f"{path}[{index}]")


def _containers(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    spec = props.get("spec") or {}
    if props.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    if props.get("kind") != "Pod":
        spec = ((spec.get("template") or {}).get("spec")) or {}
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def _load_balancers_in_values(values: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(values, Mapping):
        if values.get("type") == "LoadBalancer":
            yield path, values.get("annotations") or {}
        for key, value in values.items():
            yield from _load_balancers_in_values(value, f"{path}.{key}")


def _lb_problems(annotations: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, expected in LOAD_BALANCER_ANNOTATIONS.items():
        value = annotations.get(key)
        if value is None:
            problems.append(f"LoadBalancer Service lacks {key}")
        elif expected is not None and value != expected:
            problems.append(f"LoadBalancer Service has {key}={value!r}, expected {expected!r}")
    return problems


def _default_tags(provider_props: Mapping[str, Any]) -> Mapping[str, Any]:
    # Provider inputs arrive JSON-encoded from the engine (`defaultTags` is a string there).
    raw = provider_props.get("defaultTags")
    parsed = json.loads(raw) if isinstance(raw, str) else raw or {}
    tags = parsed.get("tags") if isinstance(parsed, Mapping) else None
    return tags if isinstance(tags, Mapping) else {}


def _settings_of(setting: Resource, bucket: Resource) -> bool:
    reference = setting.props.get("bucket")
    return setting.name == bucket.name or (reference is not None and reference == bucket.props.get("bucket"))

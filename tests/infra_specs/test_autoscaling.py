"""KEDA scaling of a model server on its queue."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.instances import INSTANCES
from infra.specs.autoscaling import QueueScaling, queue_query, vllm_scaled_object
from infra.specs.otel import KNOWN_METRICS, promql_metric_names
from infra.specs.vllm import GpuPool, InferenceInputs, ModelServing, model_server_monitor, vllm_manifests

MODEL = ModelServing(model="janhq/Jan-v1-4B")
INPUTS = InferenceInputs(access_mode="ReadWriteMany")


def test_scaled_object_targets_the_model_deployment() -> None:
    scaled = vllm_scaled_object(MODEL, INPUTS, QueueScaling(min_replicas=0, max_replicas=3))
    [deployment] = [
        m
        for m in vllm_manifests(MODEL, GpuPool(node=INSTANCES["g6.2xlarge"]), INPUTS)
        if m["kind"] == "Deployment"
    ]
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 3)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "5"


def test_queue_query_reads_the_monitored_job() -> None:
    query = queue_query(MODEL)
    assert promql_metric_names(query) == {"vllm:num_requests_waiting"} <= KNOWN_METRICS
    # The ServiceMonitor's job label is the Service name, which is what the query filters on.
    [service] = [
        m
        for m in vllm_manifests(MODEL, GpuPool(node=INSTANCES["g6.2xlarge"]), INPUTS)
        if m["kind"] == "Service"
    ]
    assert f'job="{service["metadata"]["name"]}"' in query
    selector = model_server_monitor("inference")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_bounds_are_checked() -> None:
    with pytest.raises(ValidationError):
        QueueScaling(min_replicas=5, max_replicas=2)

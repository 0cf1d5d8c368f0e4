"""Scaling vLLM on queue depth with KEDA (optional; the issue's "KEDA/HPA on queue depth").

A `ScaledObject` per model scales its Deployment on `vllm:num_requests_waiting` of that model's Service
(`job` = the Service name, set by the ServiceMonitor in `infra.specs.vllm`), read from Prometheus.
Decisions:
- The metric is the queue, not GPU utilisation: vLLM keeps GPUs busy by design, so utilisation says
  little about whether users wait; a growing queue does.
- Scaling down waits `scale_down_window_seconds` (default 10 minutes): a new replica costs a GPU node
  and minutes of weight loading, so flapping is worse than a short idle period.
- `min_replicas` 0 is allowed (dev scale-to-zero); the first request then waits for a cold start.
- While a ScaledObject owns a Deployment, whatever applies the Deployment must leave `spec.replicas`
  alone (Pulumi: `ignore_changes=["spec.replicas"]`), or each update resets KEDA's choice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.specs.vllm import InferenceInputs, ModelServing


class QueueScaling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prometheus_url: str = "http://kube-prometheus-stack-prometheus.observability.svc.cluster.local:9090"
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    waiting_per_replica: int = Field(5, ge=1)
    scale_down_window_seconds: int = Field(600, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> QueueScaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas cannot exceed max_replicas")
        return self


def queue_query(model: ModelServing) -> str:
    return f'sum(vllm:num_requests_waiting{{job="{model.service_name}"}})'


def vllm_scaled_object(model: ModelServing, inputs: InferenceInputs, scaling: QueueScaling) -> dict[str, Any]:
    """KEDA `ScaledObject` scaling one model's vLLM Deployment on its request queue."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": model.service_name,
            "namespace": inputs.namespace,
            "labels": {"app.kubernetes.io/part-of": "jan"},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model.service_name},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": scaling.scale_down_window_seconds,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_window_seconds}
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": scaling.prometheus_url,
                        "query": queue_query(model),
                        "threshold": str(scaling.waiting_per_replica),
                    },
                }
            ],
        },
    }

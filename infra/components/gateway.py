"""The gateway: Kong (official `kong/kong` chart, DB-less), the platform's single public entry.

Kong's declarative config is generated from the route table by `infra.specs.kong.kong_config` (the
same table `make dev`'s local gateway serves) and mounted from a ConfigMap; a checksum of it on the pod
template rolls Kong when the routes change (DB-less Kong reads its config only at start). Decisions:
- No ingress controller and no admin API: the routes live in Git, and nothing may reconfigure Kong at
  run time.
- On AWS the proxy is an internet-facing NLB made by the AWS Load Balancer Controller
  (`infra.components.cluster_addons.nlb_annotations`: IP targets, client addresses preserved) with TLS
  terminated by ACM on 443 and forwarded to Kong's plain HTTP port; the certificate is
  `gateway.certificateArn` or one the program requests for `api.<domain>` and `auth.<domain>` (DNS
  validation: the records to create are a stack output). Elsewhere (dev) the proxy is a ClusterIP
  Service reached with `kubectl port-forward` (README, "Platform").
- Traces go to the collector (`opentelemetry` plugin plus Kong's tracing settings); metrics are the
  `prometheus` plugin on the status port, scraped through the chart's ServiceMonitor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import helm
from infra.components.cluster_addons import nlb_annotations
from infra.specs.kong import KongInputs, kong_config, kong_env
from infra.versions import CHARTS, IMAGES

RELEASE = "kong"
CONFIG_MAP = "kong-declarative"
CONFIG_KEY = "kong.yml"
PROXY_HTTP_PORT = 8000


@dataclass(frozen=True, kw_only=True)
class GatewayArgs:
    namespace: str
    kong: KongInputs
    replicas: int
    provider: k8s.Provider
    certificate_arn: pulumi.Input[str] | None = None
    """Set on AWS: the proxy becomes an NLB with this ACM certificate on 443."""
    depends_on: list[pulumi.Resource]


class Gateway(pulumi.ComponentResource):
    """Kong's declarative config and its Helm release."""

    config: dict[str, Any]

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Gateway", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=args.depends_on)
        self.config = kong_config(args.kong)
        text = json.dumps(self.config, indent=2, sort_keys=True)
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=CONFIG_MAP, namespace=args.namespace, labels={"app.kubernetes.io/part-of": "jan"}
            ),
            data={CONFIG_KEY: text},
            opts=on_cluster,
        )
        values = kong_values(args, hashlib.sha256(text.encode()).hexdigest())
        helm.upstream_release(
            RELEASE,
            CHARTS["kong"],
            namespace=args.namespace,
            values=values,
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[config_map])),
        )
        self.register_outputs({})


def kong_values(args: GatewayArgs, config_checksum: str) -> dict[str, Any]:
    image = IMAGES["kong"]
    env: dict[str, Any] = dict(kong_env(tracing=args.kong.otel_traces_endpoint is not None))
    env |= {
        "nginx_worker_processes": "2",
        "proxy_access_log": "/dev/stdout",
        "proxy_error_log": "/dev/stderr",
    }
    proxy: dict[str, Any] = {"type": "ClusterIP", "http": {"enabled": True}, "tls": {"enabled": False}}
    if args.certificate_arn is not None:
        proxy = {
            "type": "LoadBalancer",
            "annotations": nlb_annotations(args.certificate_arn),
            # The NLB targets the pods (IP targets) and preserves client addresses (rate limits are per IP).
            "externalTrafficPolicy": "Local",
            "http": {"enabled": False},
            # TLS ends at the NLB: its 443 listener forwards to Kong's plain HTTP port.
            "tls": {"enabled": True, "servicePort": 443, "overrideServiceTargetPort": PROXY_HTTP_PORT},
        }
    return {
        "image": {"repository": image.repository, "tag": image.tag},
        "deployment": {"kong": {"enabled": True}},
        "ingressController": {"enabled": False},
        "env": env,
        "admin": {"enabled": False},
        "manager": {"enabled": False},
        "proxy": proxy,
        "dblessConfig": {"configMap": CONFIG_MAP},
        "podAnnotations": {"checksum/kong-config": config_checksum},
        "replicaCount": args.replicas,
        "podDisruptionBudget": {"enabled": args.replicas > 1, "maxUnavailable": 1},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "serviceMonitor": {"enabled": True},
        "status": {"enabled": True, "http": {"enabled": True, "containerPort": 8100}},
    }


def certificate(name: str, domain: str, opts: pulumi.ResourceOptions) -> aws.acm.Certificate:
    """An ACM certificate for the public hosts (the gateway and Keycloak), validated through DNS."""
    return aws.acm.Certificate(
        name,
        domain_name=f"api.{domain}",
        subject_alternative_names=[f"auth.{domain}"],
        validation_method="DNS",
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=False)),
    )

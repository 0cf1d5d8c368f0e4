"""The gateway: Kong (official `kong/kong` chart, DB-less), the platform's single public entry.

Kong's declarative config is generated from the route table by `infra.specs.kong.kong_config` (the
same table `make dev`'s local gateway serves) and mounted from a ConfigMap; a checksum of it on the pod
template rolls Kong when the routes change (DB-less Kong reads its config only at start). Decisions:
- No ingress controller and no admin API: the routes live in Git, and nothing may reconfigure Kong at
  run time.
- On AWS the proxy is an internet-facing NLB made by the AWS Load Balancer Controller
  (`infra.components.cluster_addons.nlb_annotations`: IP targets, client addresses preserved) with TLS
  terminated by ACM on 443 and forwarded to Kong's plain HTTP port (8000, kept in the container, off
  the Service). The certificate is `gateway.certificateArn` (already issued) or one the program
  requests for `api.<domain>` and `auth.<domain>` and validates with DNS records in `gateway.hostedZone`
  (`issued_certificate`): the listeners take the validated ARN, so they wait for the issued
  certificate instead of timing out the first `pulumi up`. Elsewhere (dev) the proxy is a ClusterIP
  Service reached with `kubectl port-forward` (README, "Platform").
- Traces go to the collector (`opentelemetry` plugin plus Kong's tracing settings); metrics are the
  `prometheus` plugin on the status port, scraped through the chart's ServiceMonitor; Kong's dashboard
  and alert ship here, with Kong (`infra.specs.monitoring`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import helm
from infra.components.cluster_addons import nlb_annotations
from infra.components.objects import monitoring_objects
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
    certificate_arn: pulumi.Input[str] | None = None
    """Set on AWS: the proxy becomes an NLB with this ACM certificate on 443."""
    monitoring_namespace: str
    """Where Kong's dashboard and alert rules go (Grafana's and Prometheus')."""
    depends_on: list[pulumi.Resource]


class Gateway(pulumi.ComponentResource):
    """Kong's declarative config, its Helm release, and its dashboard and alert rules."""

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Gateway", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        text = json.dumps(kong_config(args.kong), indent=2, sort_keys=True)
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
        monitoring_objects(name, "kong", args.monitoring_namespace, on_cluster)
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
            # TLS ends at the NLB, so the Service's only port (443) targets Kong's plain HTTP listener:
            # the chart keeps that listener in the container but off the Service with `servicePort: 0`
            # (its values.yaml documents this for TLS terminated at the load balancer).
            "http": {"enabled": True, "servicePort": 0, "containerPort": PROXY_HTTP_PORT},
            "tls": {"enabled": True, "servicePort": 443, "overrideServiceTargetPort": PROXY_HTTP_PORT},
        }
    return {
        "image": {"repository": image.repository, "tag": image.tag},
        "deployment": {"kong": {"enabled": True}},
        "ingressController": {"enabled": False},
        "env": env,
        "admin": {"enabled": False},
        "manager": {"enabled": False},
        # The chart's ServiceMonitor selects only Services labelled `enable-metrics` (and scrapes
        # the pods' `status` port behind them); without the label Kong's metrics are never scraped.
        "proxy": {**proxy, "labels": {"enable-metrics": "true"}},
        "dblessConfig": {"configMap": CONFIG_MAP},
        "podAnnotations": {"checksum/kong-config": config_checksum},
        "replicaCount": args.replicas,
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}
        if args.replicas > 1
        else {"enabled": False},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "serviceMonitor": {"enabled": True},
        "status": {"enabled": True, "http": {"enabled": True, "containerPort": 8100}},
    }


def certificate_hosts(domain: str) -> list[str]:
    """The public hosts the program's certificate covers: the gateway and Keycloak."""
    return [f"api.{domain}", f"auth.{domain}"]


def issued_certificate(
    name: str, domain: str, hosted_zone: str, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """An ACM certificate for the public hosts, validated through DNS records in `hosted_zone`.

    The ARN returned is the `CertificateValidation`'s, which resolves only once ACM has issued the
    certificate: the NLB listeners (Kong's and Keycloak's Services, hence their atomic releases)
    take it as an input, so they are created after the certificate is usable, not before.
    """
    primary, *alternatives = certificate_hosts(domain)
    cert = aws.acm.Certificate(
        name,
        domain_name=primary,
        subject_alternative_names=alternatives,
        validation_method="DNS",
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=False)),
    )
    zone = aws.route53.get_zone_output(
        name=hosted_zone, private_zone=False, opts=pulumi.InvokeOutputOptions(provider=opts.provider)
    )
    records = [
        _validation_record(f"{name}-validation-{host.split('.', 1)[0]}", cert, host, zone.zone_id, opts)
        for host in (primary, *alternatives)
    ]
    validation = aws.acm.CertificateValidation(
        name,
        certificate_arn=cert.arn,
        validation_record_fqdns=[record.fqdn for record in records],
        opts=opts,
    )
    return validation.certificate_arn


def _validation_record(
    name: str,
    cert: aws.acm.Certificate,
    host: str,
    zone_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.route53.Record:
    """The CNAME ACM asks for to prove control of `host`."""
    option = cert.domain_validation_options.apply(lambda options: _validation_for(options, host))
    return aws.route53.Record(
        name,
        zone_id=zone_id,
        name=option.apply(lambda found: found.resource_record_name or ""),
        type=option.apply(lambda found: found.resource_record_type or "CNAME"),
        records=[option.apply(lambda found: found.resource_record_value or "")],
        ttl=300,
        # ACM gives a name the same record on every certificate: a rerun takes it over.
        allow_overwrite=True,
        opts=opts,
    )


def _validation_for(
    options: Sequence[aws.acm.outputs.CertificateDomainValidationOption], host: str
) -> aws.acm.outputs.CertificateDomainValidationOption:
    for option in options:
        if option.domain_name == host:
            return option
    raise ValueError(f"ACM lists no DNS validation record for {host}")

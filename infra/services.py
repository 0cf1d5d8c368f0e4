"""The services on the cluster, wired from one `StackConfig`: security, observability, gateway,
identity, inference, search and sandbox (`build_services`).

Order is by dependency: namespaces and policies first; kube-prometheus-stack before anything that
ships a ServiceMonitor (Kong, Keycloak, vLLM, DCGM need its CRDs); everything else in parallel. The
values every app needs from these services (issuer, audience, JWKS URL, the collector endpoint,
llm-api's Keycloak settings and providers file) are collected in `Services.app_env` so the app
releases take them from here and cannot disagree with what was deployed; they are also ConfigMaps in
the apps namespace (`platform-env` for every app, `llm-api-keycloak` for llm-api) that a release can
load with `envFrom`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from apps.gateway.routes import AppName
from infra.components.cluster import APPS_NAMESPACE
from infra.components.gateway import Gateway, GatewayArgs, certificate
from infra.components.identity import Identity, IdentityArgs
from infra.components.inference import Inference, InferenceArgs
from infra.components.observability import Observability, ObservabilityArgs
from infra.components.search import SearchAndSandbox, SearchArgs
from infra.components.security import OBSERVABILITY_NAMESPACE, Security, SecurityArgs
from infra.config import Environment
from infra.specs.identity import IdentityInputs
from infra.specs.kong import KongInputs
from infra.specs.otel import ObservabilityInputs, app_otel_env, kong_traces_endpoint

if TYPE_CHECKING:
    from infra.program import Platform

# ConfigMaps in the apps namespace the app releases load with `envFrom`.
PLATFORM_ENV = "platform-env"
LLM_API_KEYCLOAK_ENV = "llm-api-keycloak"
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


@dataclass(frozen=True, slots=True)
class Services:
    security: Security
    observability: Observability
    gateway: Gateway
    identity: Identity
    inference: Inference
    search: SearchAndSandbox
    app_env: dict[str, str]
    """Settings every app gets (auth and telemetry)."""
    llm_api_env: dict[str, str]
    """llm-api's Keycloak settings on top (its client secret comes from a Secret)."""


def build_services(platform: Platform) -> Services:
    config, naming, cluster = platform.config, platform.naming, platform.cluster
    provider = cluster.provider
    security = Security(
        naming("security"), SecurityArgs(config=config, apps_namespace=APPS_NAMESPACE, provider=provider)
    )
    net = security.inputs
    namespaces: list[pulumi.Resource] = list(security.namespaces.values())
    otel = ObservabilityInputs(namespace=OBSERVABILITY_NAMESPACE)
    observability = Observability(
        naming("observability"),
        ObservabilityArgs(
            inputs=otel,
            gpus=bool(config.gpu_pools),
            collector_replicas=1 if config.environment is Environment.DEV else 2,
            provider=provider,
            depends_on=namespaces,
        ),
    )
    after_monitoring = [*namespaces, observability.monitoring]
    certificate_arn: pulumi.Input[str] | None = None
    if config.on_aws:
        certificate_arn = (
            config.gateway.certificate_arn
            or certificate(
                naming("certificate"), config.domain, pulumi.ResourceOptions(provider=platform.aws_provider)
            ).arn
        )
    gateway = Gateway(
        naming("gateway"),
        GatewayArgs(
            namespace=net.kong.namespace,
            kong=KongInputs(
                namespace=APPS_NAMESPACE,
                cors_origins=tuple(config.gateway.cors_origins),
                otel_traces_endpoint=kong_traces_endpoint(otel),
            ),
            replicas=config.gateway.replicas,
            certificate_arn=certificate_arn,
            provider=provider,
            depends_on=after_monitoring,
        ),
    )
    identity_inputs = IdentityInputs(public_url=config.identity_url, namespace=net.keycloak.namespace)
    identity = Identity(
        naming("identity"),
        IdentityArgs(
            identity=identity_inputs,
            settings=config.identity,
            web_origins=tuple(config.gateway.cors_origins),
            apps_namespace=APPS_NAMESPACE,
            certificate_arn=certificate_arn,
            provider=provider,
            depends_on=after_monitoring,
        ),
    )
    inference = Inference(
        naming("inference"),
        InferenceArgs(
            settings=config.inference,
            pools=config.gpu_pools,
            namespace=net.model_servers.namespace,
            apps_namespace=APPS_NAMESPACE,
            prometheus_url=otel.prometheus_url,
            provider=provider,
            depends_on=after_monitoring,
        ),
    )
    search = SearchAndSandbox(
        naming("search"),
        SearchArgs(
            search_namespace=net.searxng.namespace,
            sandbox_namespace=net.sandbox.namespace,
            apps_namespace=APPS_NAMESPACE,
            client_app=AppName.MCP_TOOLS.value,
            cluster_cidrs=[str(config.network.cidr)] if config.on_aws else PRIVATE_RANGES,
            provider=provider,
            depends_on=namespaces,
        ),
    )
    app_env = {**identity.app_env, **app_otel_env(otel)}
    on_cluster = pulumi.ResourceOptions(provider=provider, depends_on=namespaces)
    for config_map, data in ((PLATFORM_ENV, app_env), (LLM_API_KEYCLOAK_ENV, identity.llm_api_env)):
        k8s.core.v1.ConfigMap(
            naming(config_map),
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=config_map, namespace=APPS_NAMESPACE, labels={"app.kubernetes.io/part-of": "jan"}
            ),
            data=data,
            opts=on_cluster,
        )
    return Services(
        security=security,
        observability=observability,
        gateway=gateway,
        identity=identity,
        inference=inference,
        search=search,
        app_env=app_env,
        llm_api_env=identity.llm_api_env,
    )

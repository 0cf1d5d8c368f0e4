"""The services on the cluster, wired from one `StackConfig`: security, observability, gateway,
identity, inference, search and sandbox (`build_services`).

Order is by dependency: every Kubernetes object waits for the system nodes and CoreDNS (through the
cluster's provider), a model server for its GPU pool's node group, the load balancer Services (Kong,
Keycloak) for the AWS Load Balancer Controller; namespaces and policies first (`build_security`, before
the in-cluster data services, which deploy into its `data` and `cnpg-system` namespaces);
kube-prometheus-stack before anything that ships a ServiceMonitor (Kong, Keycloak, vLLM, DCGM need its
CRDs); everything else in parallel. Keycloak waits for its database login (written from the stack's
`DatabaseEndpoint`).
What the apps need from these services (the `IdentityInputs` behind issuer, audience and JWKS URL,
the collector's inputs, the network inputs naming SearXNG and SandboxFusion, llm-api's providers and
the model servers' API-key Secret) is kept on `Services`; the app releases (`infra.release`) derive
their inline env from exactly these values, so there is one source of truth and one env mechanism.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from apps.gateway.routes import AppName
from infra.components.cluster import APPS_NAMESPACE
from infra.components.gateway import Gateway, GatewayArgs, issued_certificate
from infra.components.identity import Identity, IdentityArgs
from infra.components.in_cluster_data import DATA_NAMESPACE, POSTGRES_CLUSTER
from infra.components.inference import Inference, InferenceArgs
from infra.components.observability import CnpgMetrics, ExporterTarget, Observability, ObservabilityArgs
from infra.components.search import SearchAndSandbox, SearchArgs
from infra.components.security import OBSERVABILITY_NAMESPACE, Security, SecurityArgs
from infra.config import DatabaseMode, Environment
from infra.database import EXPORTER_ROLE
from infra.foundation import Platform
from infra.specs.identity import IdentityInputs
from infra.specs.kong import KongInputs
from infra.specs.network_policies import NetworkInputs
from infra.specs.otel import ObservabilityInputs, kong_traces_endpoint

PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


@dataclass(frozen=True, slots=True)
class Services:
    security: Security
    observability: Observability
    gateway: Gateway
    identity: Identity
    inference: Inference
    search: SearchAndSandbox
    identity_inputs: IdentityInputs
    observability_inputs: ObservabilityInputs

    @property
    def network(self) -> NetworkInputs:
        return self.security.inputs


def build_security(platform: Platform) -> Security:
    """Namespaces and NetworkPolicies: first, since everything else deploys into them."""
    config, naming = platform.config, platform.naming
    return Security(
        naming("security"),
        SecurityArgs(config=config, apps_namespace=APPS_NAMESPACE),
        platform.on_cluster(),
    )


def postgres_metrics(platform: Platform) -> CnpgMetrics | ExporterTarget | None:
    """CNPG exports its own metrics; any other server (RDS) gets the exporter, with its bootstrap login."""
    if platform.config.database.mode is DatabaseMode.IN_CLUSTER:
        return CnpgMetrics(namespace=DATA_NAMESPACE, cluster=POSTGRES_CLUSTER)
    database = platform.database
    if database is None or EXPORTER_ROLE not in database.service_passwords:
        return None
    return ExporterTarget(
        host=database.host,
        port=database.port,
        user=EXPORTER_ROLE,
        password=database.service_passwords[EXPORTER_ROLE],
    )


def build_services(platform: Platform, security: Security) -> Services:
    config, naming = platform.config, platform.naming
    # The components deploy through the cluster's provider, which their children inherit.
    on_cluster = platform.on_cluster()
    net = security.inputs
    namespaces: list[pulumi.Resource] = list(security.namespaces.values())
    gpu_pools = platform.gpu_pools
    node_groups: dict[str, pulumi.Resource] = dict(gpu_pools.node_groups) if gpu_pools else {}
    # Services of type LoadBalancer wait for the controller that provisions them.
    load_balancers = [platform.addons.load_balancer_controller] if platform.addons else []
    otel = ObservabilityInputs(namespace=OBSERVABILITY_NAMESPACE)
    observability = Observability(
        naming("observability"),
        ObservabilityArgs(
            inputs=otel,
            gpus=bool(config.gpu_pools),
            collector_replicas=1 if config.environment is Environment.DEV else 2,
            depends_on=namespaces,
            postgres=postgres_metrics(platform),
            gpu_node_groups=list(node_groups.values()),
        ),
        on_cluster,
    )
    after_monitoring = [*namespaces, observability.monitoring]
    certificate_arn: pulumi.Input[str] | None = None
    if config.gateway.certificate_arn:
        certificate_arn = config.gateway.certificate_arn
    elif config.on_aws and config.gateway.hosted_zone:  # the config refuses eks without either
        certificate_arn = issued_certificate(
            naming("certificate"),
            config.domain,
            config.gateway.hosted_zone,
            pulumi.ResourceOptions(provider=platform.aws_provider),
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
            monitoring_namespace=otel.namespace,
            depends_on=[*after_monitoring, *load_balancers],
        ),
        on_cluster,
    )
    identity_inputs = IdentityInputs(
        public_url=config.identity_url,
        namespace=net.keycloak.namespace,
        api_origin=config.gateway_url,
        login_redirects=tuple(config.identity.login_redirects),
    )
    identity = Identity(
        naming("identity"),
        IdentityArgs(
            identity=identity_inputs,
            settings=config.identity,
            web_origins=tuple(config.gateway.cors_origins),
            apps_namespace=APPS_NAMESPACE,
            certificate_arn=certificate_arn,
            database=platform.database,
            depends_on=[*after_monitoring, *load_balancers],
        ),
        on_cluster,
    )
    inference = Inference(
        naming("inference"),
        InferenceArgs(
            settings=config.inference,
            pools=config.gpu_pools,
            namespace=net.model_servers.namespace,
            apps_namespace=APPS_NAMESPACE,
            prometheus_url=otel.prometheus_url,
            monitoring_namespace=otel.namespace,
            depends_on=after_monitoring,
            pool_nodes=dict(gpu_pools.pool_nodes) if gpu_pools else {},
            node_groups=node_groups,
        ),
        on_cluster,
    )
    search = SearchAndSandbox(
        naming("search"),
        SearchArgs(
            search_namespace=net.searxng.namespace,
            sandbox_namespace=net.sandbox.namespace,
            apps_namespace=APPS_NAMESPACE,
            client_app=AppName.MCP_TOOLS.value,
            cluster_cidrs=[str(config.network.cidr)] if config.on_aws else PRIVATE_RANGES,
            depends_on=namespaces,
        ),
        on_cluster,
    )
    return Services(
        security=security,
        observability=observability,
        gateway=gateway,
        identity=identity,
        inference=inference,
        search=search,
        identity_inputs=identity_inputs,
        observability_inputs=otel,
    )

"""Network and pod security: default-deny NetworkPolicies with explicit allows, and PSA namespace labels.

Every namespace the platform owns starts from "deny all ingress and egress"; each allow below names one
data flow. Pods are selected by the labels the charts put on them (`app.kubernetes.io/name` for our four
apps; the upstream charts' labels are inputs with their defaults), namespaces by the label Kubernetes
sets itself (`kubernetes.io/metadata.name`). Decisions:

- Flows are data: `flows()` lists every one (source, destination, ports, why) and the policies are
  generated from that list alone (components add theirs as `Flow`s too); a test checks the rendered
  policies allow exactly the listed flows. Among them: Kong → each app; response-api → llm-api and
  mcp-tools; llm-api and mcp-tools (file search over uploads) → media-api; every app → Postgres, the
  collector, Keycloak; mcp-tools → SearXNG and SandboxFusion; Prometheus → the metrics ports.
- DNS egress (kube-dns, 53 UDP/TCP) in every namespace except the sandbox, whose egress is denied
  outright: code it runs cannot resolve or reach anything.
- Egress to the internet is public-only (`0.0.0.0/0` minus private, CGNAT and link-local ranges, which
  also keeps the cloud metadata endpoint out of reach) and only where a flow needs it: mcp-tools (web
  fetch, Serper), media-api (remote fetch of uploads), SearXNG (search engines), vLLM (Hugging Face
  downloads), plus llm-api's external upstreams when configured. Fetching user-supplied URLs therefore
  cannot reach cluster or VPC addresses.
- Postgres and S3 are either in-cluster (CNPG, SeaweedFS in `data_namespace`: selected by labels) or
  external (RDS, AWS S3: CIDRs). The data namespace gets default-deny *ingress* only: CNPG's instance
  manager talks to the Kubernetes API and to backup storage, whose addresses differ per cluster.
- The observability namespace is not default-denied (kube-prometheus-stack's operator, webhooks and
  exporters have their own needs); only the collector's pods get an ingress policy (OTLP from the
  platform's namespaces).
- Pod Security Admission: the apps' namespace enforces `restricted`; the sandbox and the third-party
  namespaces (Kong, Keycloak, vLLM, SearXNG, data) enforce `baseline` and warn/audit at `restricted`,
  since upstream images (vLLM as root, SandboxFusion) cannot all meet `restricted`. Labels pin the
  policy version so a cluster upgrade does not change admission silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from apps.gateway.routes import APPS, AppName

NAME_LABEL = "app.kubernetes.io/name"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
PSA_VERSION = "v1.31"
NON_PUBLIC_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
OTLP_PORTS = (4317, 4318)
PsaLevel = Literal["restricted", "baseline", "privileged"]


class Workload(BaseModel):
    """Pods of one component: their namespace, labels and the ports they serve."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    labels: Mapping[str, str]
    ports: tuple[int, ...]


class External(BaseModel):
    """A destination outside the cluster (RDS, AWS S3, an upstream model API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cidrs: tuple[str, ...] = Field(min_length=1)
    ports: tuple[int, ...] = Field(min_length=1)


def _workload(namespace: str, name: str, *ports: int) -> Workload:
    return Workload(namespace=namespace, labels={NAME_LABEL: name}, ports=ports)


class NetworkInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apps_namespace: str = "jan"
    kong: Workload = _workload("gateway", "kong", 8000, 8443)
    kong_status_port: int = 8100
    keycloak: Workload = _workload("identity", "keycloakx", 8080)
    keycloak_management_port: int = 9000
    # Browsers reach Keycloak directly (its own LoadBalancer/route) unless it is published through Kong.
    keycloak_public: bool = True
    # Keycloak 26's cache stack between replicas (JGroups and its failure detection).
    keycloak_cluster_ports: tuple[int, ...] = (7800, 57800)
    model_servers: Workload = Workload(
        namespace="inference", labels={"app.kubernetes.io/component": "model-server"}, ports=(8000,)
    )
    searxng: Workload = _workload("search", "searxng", 8080)
    valkey: Workload = _workload("search", "valkey", 6379)
    sandbox: Workload = _workload("sandbox", "sandbox-fusion", 8080)
    collector: Workload = _workload("observability", "opentelemetry-collector", *OTLP_PORTS)
    prometheus: Workload = _workload("observability", "prometheus", 9090)
    postgres: Workload | External = Workload(
        namespace="data", labels={"cnpg.io/podRole": "instance"}, ports=(5432,)
    )
    postgres_metrics_port: int = 9187
    cnpg_operator: Workload = _workload("cnpg-system", "cloudnative-pg", 8000)
    object_store: Workload | External = _workload("data", "seaweedfs", 8333)
    llm_upstreams: External | None = None
    dns_namespace: str = "kube-system"
    dns_labels: Mapping[str, str] = Field(default_factory=lambda: {"k8s-app": "kube-dns"})

    def app(self, app: AppName) -> Workload:
        return Workload(
            namespace=self.apps_namespace, labels={NAME_LABEL: app.value}, ports=(APPS[app].port,)
        )


Peer = Workload | External


def namespace_manifests(inputs: NetworkInputs) -> list[dict[str, Any]]:
    """The platform's namespaces with Pod Security Admission labels."""
    levels: dict[str, PsaLevel] = {inputs.apps_namespace: "restricted"}
    for namespace in _owned_namespaces(inputs):
        levels.setdefault(namespace, "baseline")
    return [_namespace(name, level) for name, level in levels.items()]


def _namespace(name: str, enforce: PsaLevel) -> dict[str, Any]:
    labels = {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": PSA_VERSION,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": PSA_VERSION,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": PSA_VERSION,
        "app.kubernetes.io/part-of": "jan",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _owned_namespaces(inputs: NetworkInputs) -> list[str]:
    """Namespaces that get default-deny (ingress and egress), in a stable order."""
    candidates = [
        inputs.apps_namespace,
        inputs.kong.namespace,
        inputs.keycloak.namespace,
        inputs.model_servers.namespace,
        inputs.searxng.namespace,
        inputs.sandbox.namespace,
    ]
    return list(dict.fromkeys(candidates))


def _data_namespaces(inputs: NetworkInputs) -> list[str]:
    stores = (inputs.postgres, inputs.object_store)
    return list(dict.fromkeys(store.namespace for store in stores if isinstance(store, Workload)))


class Flow(BaseModel):
    """One data flow the platform needs: who talks to whom, on which ports, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    source: Workload | None  # None: from anywhere (a public entry)
    destination: Peer
    ports: tuple[int, ...] | None = None  # None: every port the destination serves (none listed: any)
    why: str = Field(min_length=1)

    @property
    def port_list(self) -> tuple[int, ...]:
        return self.ports or self.destination.ports


def network_policies(inputs: NetworkInputs, extra_flows: Sequence[Flow] = ()) -> list[dict[str, Any]]:
    """Every NetworkPolicy: default-deny per namespace, DNS, then one allow per flow."""
    policies = [_deny(namespace, ["Ingress", "Egress"]) for namespace in _owned_namespaces(inputs)]
    policies += [_deny(namespace, ["Ingress"]) for namespace in _data_namespaces(inputs)]
    policies += [
        _dns(namespace, inputs)
        for namespace in _owned_namespaces(inputs)
        if namespace != inputs.sandbox.namespace
    ]
    owned = set(_owned_namespaces(inputs))
    for flow in [*flows(inputs), *extra_flows]:
        policies += _allow(flow, egress_isolated=owned)
    return policies


def flows(inputs: NetworkInputs) -> list[Flow]:
    """The flows between the platform's workloads (the one list the policies are generated from)."""
    llm, response, media, tools = (inputs.app(app) for app in AppName)
    internet_web = External(cidrs=("0.0.0.0/0",), ports=(80, 443))
    prometheus = inputs.prometheus
    # Prometheus scrapes (destination, ports: None for every port it serves, why).
    scraped = {
        "kong": (inputs.kong, (inputs.kong_status_port,), "Kong's metrics"),
        "keycloak": (inputs.keycloak, (inputs.keycloak_management_port,), "Keycloak's metrics"),
        "model-servers": (inputs.model_servers, None, "vLLM's metrics (KEDA scales on them)"),
    }
    # Workloads that reach the public web on 80 and 443.
    on_the_web = {
        "media-api": (media, "remote fetch of uploads"),
        "mcp-tools": (tools, "web fetch, Serper"),
        "searxng": (inputs.searxng, "search engines"),
    }
    # Between the apps and to the platform's services: name -> (source, destination, why).
    calls: dict[str, tuple[Workload, Peer, str]] = {
        "response-api-to-llm-api": (response, llm, "the model loop"),
        "media-api-to-llm-api": (media, llm, "API-key validation"),
        "mcp-tools-to-llm-api": (tools, llm, "API-key validation"),
        "llm-api-to-media-api": (llm, media, "resolving jan_ media ids"),
        "mcp-tools-to-media-api": (tools, media, "file search fetches uploaded files"),
        "response-api-to-mcp-tools": (response, tools, "MCP tool calls"),
        "llm-api-to-model-servers": (llm, inputs.model_servers, "inference"),
        "media-api-to-object-store": (media, inputs.object_store, "uploads"),
        "mcp-tools-to-searxng": (tools, inputs.searxng, "web search"),
        "mcp-tools-to-sandbox": (tools, inputs.sandbox, "code execution"),
        "searxng-to-valkey": (inputs.searxng, inputs.valkey, "SearXNG's cache"),
    }
    found = [
        Flow(name="public-to-kong", source=None, destination=inputs.kong, why="the public entry"),
        Flow(
            name="kong-to-collector",
            source=inputs.kong,
            destination=inputs.collector,
            ports=(OTLP_PORTS[1],),
            why="Kong's traces",
        ),
        *(
            Flow(name=f"prometheus-to-{name}", source=prometheus, destination=target, ports=ports, why=why)
            for name, (target, ports, why) in scraped.items()
        ),
        *(
            Flow(name=name, source=source, destination=target, why=why)
            for name, (source, target, why) in calls.items()
        ),
        *(
            Flow(name=f"{name}-to-internet", source=source, destination=internet_web, why=why)
            for name, (source, why) in on_the_web.items()
        ),
        Flow(
            name="model-servers-to-internet",
            source=inputs.model_servers,
            destination=External(cidrs=("0.0.0.0/0",), ports=(443,)),
            why="Hugging Face downloads",
        ),
    ]
    for app, workload in zip(AppName, (llm, response, media, tools), strict=True):
        found += [
            Flow(name=f"kong-to-{app.value}", source=inputs.kong, destination=workload, why="routes"),
            Flow(
                name=f"{app.value}-to-postgres",
                source=workload,
                destination=inputs.postgres,
                why="its schema",
            ),
            Flow(
                name=f"{app.value}-to-collector",
                source=workload,
                destination=inputs.collector,
                ports=(OTLP_PORTS[1],),
                why="telemetry (OTLP/HTTP)",
            ),
            Flow(
                name=f"{app.value}-to-keycloak",
                source=workload,
                destination=inputs.keycloak,
                why="JWKS (llm-api: also the admin API)",
            ),
        ]
    found += _identity_and_data_flows(inputs)
    for namespace in _data_namespaces(inputs):
        everyone = Workload(namespace=namespace, labels={}, ports=())
        found.append(
            Flow(
                name=f"within-{namespace}",
                source=everyone,
                destination=everyone,
                why="replication between CNPG instances, traffic between SeaweedFS' own servers",
            )
        )
    if inputs.llm_upstreams is not None:
        found.append(
            Flow(
                name="llm-api-to-upstreams",
                source=llm,
                destination=inputs.llm_upstreams,
                why="the external model API",
            )
        )
    return found


def _identity_and_data_flows(inputs: NetworkInputs) -> list[Flow]:
    keycloak = inputs.keycloak
    found = [
        Flow(
            name="keycloak-to-postgres",
            source=keycloak,
            destination=inputs.postgres,
            why="Keycloak's database",
        ),
        Flow(
            name="keycloak-to-keycloak",
            source=keycloak,
            destination=keycloak,
            ports=inputs.keycloak_cluster_ports,
            why="the cache cluster between replicas",
        ),
    ]
    if inputs.keycloak_public:
        found.append(Flow(name="public-to-keycloak", source=None, destination=keycloak, why="browser logins"))
    else:
        found.append(
            Flow(name="kong-to-keycloak", source=inputs.kong, destination=keycloak, why="logins via Kong")
        )
    if isinstance(inputs.postgres, Workload):
        found += [
            Flow(
                name="cnpg-operator-to-postgres",
                source=inputs.cnpg_operator,
                destination=inputs.postgres,
                ports=inputs.cnpg_operator.ports,
                why="the operator's instance manager",
            ),
            Flow(
                name="prometheus-to-postgres",
                source=inputs.prometheus,
                destination=inputs.postgres,
                ports=(inputs.postgres_metrics_port,),
                why="Postgres metrics",
            ),
        ]
    return found


def _deny(namespace: str, types: list[str]) -> dict[str, Any]:
    return _policy("default-deny", namespace, {}, {"policyTypes": types})


def _dns(namespace: str, inputs: NetworkInputs) -> dict[str, Any]:
    peer = _selector(inputs.dns_namespace, inputs.dns_labels)
    ports = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    return _policy(
        "allow-dns", namespace, {}, {"policyTypes": ["Egress"], "egress": [{"to": [peer], "ports": ports}]}
    )


def _allow(flow: Flow, *, egress_isolated: set[str]) -> list[dict[str, Any]]:
    """An egress policy on the source and, for an in-cluster destination, an ingress policy on it.

    Sources outside the default-denied namespaces (Prometheus, the CNPG operator) get no egress policy:
    one would isolate their egress and cut every flow not listed here.
    """
    source, destination = flow.source, flow.destination
    port_list = [{"protocol": "TCP", "port": port} for port in flow.port_list]
    policies = []
    ports = {"ports": port_list} if port_list else {}  # no ports listed: any port
    if source is not None and source.namespace in egress_isolated:
        rule = {"to": _peers(destination), **ports}
        spec = {"podSelector": _match(source.labels), "policyTypes": ["Egress"], "egress": [rule]}
        policies.append(_policy(f"allow-{flow.name}-egress", source.namespace, source.labels, spec))
    if isinstance(destination, Workload):
        ingress: dict[str, Any] = dict(ports)
        if source is not None:
            ingress["from"] = _peers(source)
        spec = {"podSelector": _match(destination.labels), "policyTypes": ["Ingress"], "ingress": [ingress]}
        policies.append(
            _policy(f"allow-{flow.name}-ingress", destination.namespace, destination.labels, spec)
        )
    return policies


def _peers(peer: Peer) -> list[dict[str, Any]]:
    if isinstance(peer, Workload):
        return [_selector(peer.namespace, peer.labels)]
    public = peer.cidrs == ("0.0.0.0/0",)
    return [
        {"ipBlock": {"cidr": cidr, "except": list(NON_PUBLIC_CIDRS)} if public else {"cidr": cidr}}
        for cidr in peer.cidrs
    ]


def _selector(namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"namespaceSelector": _match({NAMESPACE_LABEL: namespace}), "podSelector": _match(labels)}


def _match(labels: Mapping[str, str]) -> dict[str, Any]:
    return {"matchLabels": dict(labels)} if labels else {}


def _policy(name: str, namespace: str, pod_labels: Mapping[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "jan"}},
        "spec": {"podSelector": _match(pod_labels), **spec},
    }

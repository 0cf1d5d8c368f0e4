"""Network and pod security: default-deny NetworkPolicies with explicit allows, and PSA namespace labels.

Every namespace the platform owns starts from "deny all ingress and egress"; each allow below names one
data flow. Pods are selected by the labels the charts put on them (`app.kubernetes.io/name` for our four
apps; the upstream charts' labels are inputs with their defaults), namespaces by the label Kubernetes
sets itself (`kubernetes.io/metadata.name`). Decisions:

- Flows: Kong → each app; response-api → llm-api and mcp-tools; llm-api → media-api (resolving
  `jan_*` ids); media-api, response-api, mcp-tools → llm-api (API-key validation); every app →
  Postgres, the collector (OTLP/HTTP 4318) and Keycloak (JWKS; llm-api also the admin API); media-api →
  S3; llm-api → the vLLM Services; mcp-tools → SearXNG and SandboxFusion; SearXNG → Valkey. Kong →
  the collector (traces). Prometheus → Kong's status port, Keycloak's management port and vLLM.
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

from collections.abc import Mapping
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


def network_policies(inputs: NetworkInputs) -> list[dict[str, Any]]:
    """Every NetworkPolicy: default-deny per namespace, DNS, then one allow per flow."""
    policies = [_deny(namespace, ["Ingress", "Egress"]) for namespace in _owned_namespaces(inputs)]
    for namespace in _data_namespaces(inputs):
        # Replication between CNPG instances and traffic between SeaweedFS' own servers.
        same_namespace = {"policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}
        policies += [
            _deny(namespace, ["Ingress"]),
            _policy("allow-same-namespace", namespace, {}, same_namespace),
        ]
    policies += [
        _dns(namespace, inputs)
        for namespace in _owned_namespaces(inputs)
        if namespace != inputs.sandbox.namespace
    ]
    owned = set(_owned_namespaces(inputs))
    for name, source, destination, ports in _flows(inputs):
        policies += _allow(name, source, destination, ports, egress_isolated=owned)
    return policies


def _flows(inputs: NetworkInputs) -> list[tuple[str, Workload | None, Peer, tuple[int, ...] | None]]:
    """(name, source pods or None for anywhere, destination, ports or None for all its ports)."""
    llm, response, media, tools = (inputs.app(app) for app in AppName)
    internet_web = External(cidrs=("0.0.0.0/0",), ports=(80, 443))
    flows: list[tuple[str, Workload | None, Peer, tuple[int, ...] | None]] = [
        ("public-to-kong", None, inputs.kong, None),
        ("kong-to-collector", inputs.kong, inputs.collector, (OTLP_PORTS[1],)),
        ("prometheus-to-kong", inputs.prometheus, inputs.kong, (inputs.kong_status_port,)),
        ("prometheus-to-keycloak", inputs.prometheus, inputs.keycloak, (inputs.keycloak_management_port,)),
        ("prometheus-to-model-servers", inputs.prometheus, inputs.model_servers, None),
        ("response-api-to-llm-api", response, llm, None),
        ("media-api-to-llm-api", media, llm, None),
        ("mcp-tools-to-llm-api", tools, llm, None),
        ("llm-api-to-media-api", llm, media, None),
        ("response-api-to-mcp-tools", response, tools, None),
        ("llm-api-to-model-servers", llm, inputs.model_servers, None),
        ("media-api-to-object-store", media, inputs.object_store, None),
        ("media-api-to-internet", media, internet_web, None),
        ("mcp-tools-to-searxng", tools, inputs.searxng, None),
        ("mcp-tools-to-sandbox", tools, inputs.sandbox, None),
        ("mcp-tools-to-internet", tools, internet_web, None),
        ("searxng-to-valkey", inputs.searxng, inputs.valkey, None),
        ("searxng-to-internet", inputs.searxng, internet_web, None),
        (
            "model-servers-to-internet",
            inputs.model_servers,
            External(cidrs=("0.0.0.0/0",), ports=(443,)),
            None,
        ),
    ]
    for app, workload in zip(AppName, (llm, response, media, tools), strict=True):
        flows += [
            (f"kong-to-{app.value}", inputs.kong, workload, None),
            (f"{app.value}-to-postgres", workload, inputs.postgres, None),
            (f"{app.value}-to-collector", workload, inputs.collector, (OTLP_PORTS[1],)),
            (f"{app.value}-to-keycloak", workload, inputs.keycloak, None),
        ]
    flows += _identity_and_data_flows(inputs)
    if inputs.llm_upstreams is not None:
        flows.append(("llm-api-to-upstreams", llm, inputs.llm_upstreams, None))
    return flows


def _identity_and_data_flows(
    inputs: NetworkInputs,
) -> list[tuple[str, Workload | None, Peer, tuple[int, ...] | None]]:
    keycloak = inputs.keycloak
    flows: list[tuple[str, Workload | None, Peer, tuple[int, ...] | None]] = [
        ("keycloak-to-postgres", keycloak, inputs.postgres, None),
        ("keycloak-to-keycloak", keycloak, keycloak, inputs.keycloak_cluster_ports),
    ]
    if inputs.keycloak_public:
        flows.append(("public-to-keycloak", None, keycloak, None))
    else:
        flows.append(("kong-to-keycloak", inputs.kong, keycloak, None))
    if isinstance(inputs.postgres, Workload):
        flows += [
            ("cnpg-operator-to-postgres", inputs.cnpg_operator, inputs.postgres, inputs.cnpg_operator.ports),
            ("prometheus-to-postgres", inputs.prometheus, inputs.postgres, (inputs.postgres_metrics_port,)),
        ]
    return flows


def _deny(namespace: str, types: list[str]) -> dict[str, Any]:
    return _policy("default-deny", namespace, {}, {"policyTypes": types})


def _dns(namespace: str, inputs: NetworkInputs) -> dict[str, Any]:
    peer = _selector(inputs.dns_namespace, inputs.dns_labels)
    ports = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    return _policy(
        "allow-dns", namespace, {}, {"policyTypes": ["Egress"], "egress": [{"to": [peer], "ports": ports}]}
    )


def _allow(
    name: str,
    source: Workload | None,
    destination: Peer,
    ports: tuple[int, ...] | None,
    *,
    egress_isolated: set[str],
) -> list[dict[str, Any]]:
    """An egress policy on the source and, for an in-cluster destination, an ingress policy on it.

    Sources outside the default-denied namespaces (Prometheus, the CNPG operator) get no egress policy:
    one would isolate their egress and cut every flow not listed here.
    """
    port_list = [{"protocol": "TCP", "port": port} for port in (ports or destination.ports)]
    policies = []
    if source is not None and source.namespace in egress_isolated:
        rule = {"to": _peers(destination), "ports": port_list}
        spec = {"podSelector": _match(source.labels), "policyTypes": ["Egress"], "egress": [rule]}
        policies.append(_policy(f"allow-{name}-egress", source.namespace, source.labels, spec))
    if isinstance(destination, Workload):
        ingress: dict[str, Any] = {"ports": port_list}
        if source is not None:
            ingress["from"] = _peers(source)
        spec = {"podSelector": _match(destination.labels), "policyTypes": ["Ingress"], "ingress": [ingress]}
        policies.append(_policy(f"allow-{name}-ingress", destination.namespace, destination.labels, spec))
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

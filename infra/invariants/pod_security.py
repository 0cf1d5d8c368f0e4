"""Pod Security Standards: every pod meets the level its namespace enforces.

The rules are the Kubernetes Pod Security Standards (baseline and restricted, latest version) as the
admission controller applies them to a pod template; a namespace without an `enforce` label, or one
the render does not create, enforces nothing the render can know. Windows-only fields are ignored
(no Windows nodes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from infra.invariants import Finding, PodTemplate, RenderView

ENFORCE = "pod-security.kubernetes.io/enforce"
_LEVELS = {"privileged": 0, "baseline": 1, "restricted": 2}
_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def pod_security(render: RenderView) -> list[Finding]:
    findings = []
    for pod in render.pod_templates:
        if pod.modelled:
            continue
        level = (render.namespaces.get(pod.namespace) or {}).get(ENFORCE, "privileged")
        rank = _LEVELS.get(level, 0)
        problems = list(_baseline(pod)) if rank >= 1 else []
        if rank >= 2:
            problems += _restricted(pod)
        findings += [Finding("pod-security", pod.owner, f"{level}: {problem}") for problem in problems]
    return findings


def _containers(pod: PodTemplate) -> list[Mapping[str, Any]]:
    return [*pod.containers(), *(pod.spec.get("ephemeralContainers") or [])]


def _baseline(pod: PodTemplate) -> Iterator[str]:
    spec = pod.spec
    pod_context = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"{field} is true"
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            yield f"volume {volume.get('name')} is a hostPath"
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')} is not a safe sysctl"
    yield from _seccomp_and_selinux("pod", pod_context, allow_unset=True)
    for key, value in pod.annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            yield f"AppArmor annotation {key}={value}"
    for container in _containers(pod):
        name = f"container {container.get('name')}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            yield f"{name} is privileged"
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - _BASELINE_CAPABILITIES:
            yield f"{name} adds capabilities {sorted(added - _BASELINE_CAPABILITIES)}"
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"{name} uses hostPort {port['hostPort']}"
        if context.get("procMount") not in (None, "Default"):
            yield f"{name} sets procMount {context['procMount']}"
        yield from _seccomp_and_selinux(name, context, allow_unset=True)


def _seccomp_and_selinux(where: str, context: Mapping[str, Any], *, allow_unset: bool) -> Iterator[str]:
    seccomp = (context.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined" or (not allow_unset and seccomp not in ("RuntimeDefault", "Localhost")):
        yield f"{where} seccomp profile is {seccomp or 'unset'}"
    apparmor = (context.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        yield f"{where} AppArmor profile is {apparmor}"
    selinux = context.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        yield f"{where} sets SELinux options {selinux}"


def _restricted(pod: PodTemplate) -> Iterator[str]:
    spec = pod.spec
    pod_context = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if kinds - _RESTRICTED_VOLUMES:
            yield f"volume {volume.get('name')} is of a type restricted forbids ({sorted(kinds)})"
    if pod_context.get("runAsUser") == 0:
        yield "pod runs as user 0"
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for container in _containers(pod):
        name = f"container {container.get('name')}"
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{name} does not set allowPrivilegeEscalation: false"
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            yield f"{name} does not run as non-root (runAsNonRoot)"
        if context.get("runAsUser") == 0:
            yield f"{name} runs as user 0"
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{name} seccomp profile is {seccomp or 'unset'} (RuntimeDefault or Localhost required)"
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"{name} does not drop ALL capabilities"
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            yield f"{name} adds capabilities beyond NET_BIND_SERVICE"

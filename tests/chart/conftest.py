"""Shared fixtures for the Helm chart tests.

The chart is rendered with Helm's own Go SDK (helm-python-sdk), offline: no helm binary,
no cluster. Every value set below is rendered once per test session.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "keygate"
RELEASE = "keygate"
NAMESPACE = "keygate"
KUBE_VERSION = "1.35.0"

MASTER_KEYS = "k2:" + "A" * 43 + "=,k1:" + "B" * 43 + "="

# Value sets the chart must render, lint and validate cleanly. Each is what a user would pass
# with -f; the chart's defaults fill the rest.
VALUE_SETS: dict[str, dict[str, Any]] = {
    # Chart defaults: references the Secret "keygate-secrets", HPA on, ServiceMonitor off.
    "default": {},
    # Secrets from External Secrets Operator (or any tool) through existingSecret, SMTP on.
    "external-secrets": {
        "config": {
            "publicUrl": "https://auth.example.com",
            "smtp": {"enabled": True, "from": "keygate <no-reply@example.com>"},
        },
        "secrets": {"existingSecret": "keygate-from-eso"},
    },
    # Development: the chart creates the Secret from values.
    "chart-secret": {
        "config": {"publicUrl": "http://localhost:8080"},
        "secrets": {
            "existingSecret": "",
            "databaseUrl": "postgres://keygate:pw@postgres:5432/keygate",
            "gatewayDatabaseUrl": "postgres://keygate_gw:pw@postgres:5432/keygate",
            "operatorDatabaseUrl": "postgres://keygate_op:pw@postgres:5432/keygate",
            "redisUrl": "redis://redis:6379/0",
            "masterKeys": MASTER_KEYS,
        },
    },
    # ServiceMonitor on (Prometheus Operator present).
    "servicemonitor": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    },
    # HPA off, a single replica: no PDB that could block a drain.
    "single-replica": {
        "gateway": {"autoscaling": {"enabled": False}, "replicaCount": 1},
        "operator": {"replicaCount": 1},
    },
    # HPA off, fixed size.
    "fixed-five": {
        "gateway": {"autoscaling": {"enabled": False}, "replicaCount": 5},
    },
    # Operator limited to namespaces, NetworkPolicies off, chart Ingress on.
    "namespaced-operator": {
        "operator": {"watchNamespaces": ["team-a", "team-b"]},
        "networkPolicy": {"enabled": False},
        "gateway": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "auth.example.com",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                "handoffHosts": ["demo.example.com", "orders.example.org"],
            }
        },
        "rbac": {"aggregateToDefaultRoles": False},
    },
    # Istio's gRPC provider: requirements by host in the gateway's config file.
    "ext-authz-host-requirements": {
        "gateway": {"extAuthz": {"hostRequirements": {"demo.example.com": "tenant=acme&role=orders-reader", "shop.example.com:8443": "tenant=acme"}}},
    },
    # Everything tuned the way a production values file might.
    "production": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "ghcr"}],
        "commonLabels": {"team": "platform"},
        "config": {
            "publicUrl": "https://auth.example.com",
            "logLevel": "info,keygate_gateway=debug",
            "trustedProxies": ["10.244.0.0/16", "fd00::/8"],
            "smtp": {"enabled": True, "from": "no-reply@example.com"},
        },
        "gateway": {
            "autoscaling": {"minReplicas": 4, "maxReplicas": 20, "targetMemoryUtilizationPercentage": 80},
            "pdb": {"minAvailable": 2},
            "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
            "topologySpread": {"zone": "DoNotSchedule", "hostname": "DoNotSchedule"},
            "ingress": {"enabled": True, "className": "nginx", "host": "auth.example.com"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/keygate"}},
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "podAnnotations": {"example.com/team": "platform"},
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "auth", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}
                        ]
                    }
                }
            },
        },
        "operator": {"leaseName": "keygate-leader", "podLabels": {"team": "platform"}},
        "migrations": {"backoffLimit": 1, "activeDeadlineSeconds": 300},
        "networkPolicy": {
            "ingressControllers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}
            ],
            "egress": {
                "dns": [{"ipBlock": {"cidr": "169.254.20.10/32"}}],
                "postgres": {"ports": [{"port": 5432}], "to": [{"ipBlock": {"cidr": "10.10.0.0/24"}}]},
                "redis": {"ports": [{"port": 6380, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.10.1.0/24"}}]},
                "identityProviders": {"ports": [{"port": 443}], "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
                "extra": [{"ports": [{"port": 4317}], "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "otel"}}}]}],
            },
        },
        "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "5s"},
        "podSecurity": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge override into a copy of base the way Helm coalesces values files."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="session")
def chart():
    loaded = helm.Chart.load(str(CHART))
    yield loaded
    loaded.close()


@functools.lru_cache(maxsize=None)
def _render_cached(name: str) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as c:
        return c.render(VALUE_SETS[name], name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any], *, is_upgrade: bool = False) -> dict[str, str]:
    """Render the chart with the given values; returns {template path: manifest text}."""
    with helm.Chart.load(str(CHART)) as c:
        return c.render(
            values, name=RELEASE, namespace=NAMESPACE,
            is_install=not is_upgrade, is_upgrade=is_upgrade,
        )


def objects_of(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a rendering (NOTES.txt and empty documents left out)."""
    objs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__template__", path)
                objs.append(doc)
    return objs


def strip_meta(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "__template__"}


class Rendering:
    """One value set rendered: its objects, with lookups by kind and name."""

    def __init__(self, name: str, manifests: dict[str, str]):
        self.name = name
        self.manifests = manifests
        self.objects = objects_of(manifests)
        self.notes = next((t for p, t in manifests.items() if p.endswith("NOTES.txt")), "")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def values(self) -> dict[str, Any]:
        with helm.Chart.load(str(CHART)) as c:
            return c.merge_values(VALUE_SETS[self.name])


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendering(request) -> Rendering:
    return Rendering(request.param, _render_cached(request.param))


def rendering_of(name: str) -> Rendering:
    return Rendering(name, _render_cached(name))


def pod_templates(r: Rendering) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod template) of every Deployment and Job."""
    out = []
    for o in r.of_kind("Deployment") + r.of_kind("Job"):
        out.append((f'{o["kind"]}/{o["metadata"]["name"]}', o["spec"]["template"]))
    return out

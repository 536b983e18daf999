"""Render and lint the chart for every value set, and validate every object it produces
against the Kubernetes JSON schemas of a current minor (strict: unknown fields fail)."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest

from conftest import CHART, KUBE_VERSION, VALUE_SETS, Rendering, strip_meta

# Kinds that are not built into Kubernetes; validated structurally in test_properties.py.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict_is_clean(name):
    report = helm.lint(str(CHART), VALUE_SETS[name], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_every_value_set_renders_objects(rendering: Rendering):
    kinds = {o["kind"] for o in rendering.objects}
    assert {"Deployment", "Service", "ServiceAccount", "Job"} <= kinds, kinds
    assert rendering.notes.strip(), "NOTES.txt rendered empty"


def test_every_object_is_valid_kubernetes(rendering: Rendering):
    checked = 0
    for obj in rendering.objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(strip_meta(obj), KUBE_VERSION, True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(
                f'{rendering.name}: {obj["kind"]}/{obj["metadata"]["name"]} '
                f'({obj["__template__"]}) is invalid at {list(err.path)}: {err.message}'
            )
        checked += 1
    assert checked >= 10


def test_objects_are_namespaced_to_the_release(rendering: Rendering):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    watch = rendering.values()["operator"]["watchNamespaces"]
    for obj in rendering.objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert ns is None
        elif obj["kind"] in {"Role", "RoleBinding"} and ns in watch:
            continue
        else:
            assert ns == "keygate", f'{obj["kind"]}/{obj["metadata"]["name"]} in {ns}'


def test_names_are_unique_per_kind_and_namespace(rendering: Rendering):
    seen = set()
    for obj in rendering.objects:
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)


def test_upgrade_renders_like_install():
    with helm.Chart.load(str(CHART)) as c:
        install = c.render({}, name="keygate", namespace="keygate", is_install=True)
        upgrade = c.render({}, name="keygate", namespace="keygate", is_upgrade=True, revision=2)
    strip = {k: v for k, v in install.items() if not k.endswith("NOTES.txt")}
    assert strip == {k: v for k, v in upgrade.items() if not k.endswith("NOTES.txt")}


def test_release_name_without_chart_name_prefixes_resources():
    with helm.Chart.load(str(CHART)) as c:
        manifests = c.render({}, name="auth", namespace="identity", is_install=True)
    r = Rendering("custom-release", manifests)
    assert r.find("Deployment", "auth-keygate-gateway") is not None
    assert r.find("Service", "auth-keygate-gateway") is not None
    assert "auth-keygate-gateway.identity.svc.cluster.local:8080/forward-auth" in r.notes

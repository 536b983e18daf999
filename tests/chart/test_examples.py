"""The manifests under examples/ that this chart's docs point to: built-in kinds are valid
Kubernetes, keygate resources match the CRD schemas (unknown fields refused), and the
forward-auth wiring points at the chart's gateway Service."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import KUBE_VERSION, REPO
from crd_schema import GROUP, VERSION, load_crds, served_schema, strict_json_schema

EXAMPLE_DIRS = ["ingress-nginx", "traefik", "envoy-contour", "gitops", "gateway-api"]
GATEWAY_URL = "http://keygate-gateway.keygate.svc.cluster.local:8080"
IDENTITY_HEADERS = ["X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Email-Verified", "X-Auth-Request-Groups", "X-Keygate-Tenant", "X-Keygate-Subject"]


def manifests(directory: str) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((REPO / "examples" / directory).rglob("*.yaml")):
        if "helm" in path.relative_to(REPO / "examples").parts:
            continue  # values files for keygate's chart, not manifests
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path, doc))
    return out


def all_example_objects():
    return [item for d in EXAMPLE_DIRS for item in manifests(d)]


def is_builtin(obj) -> bool:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    # gateway.networking.k8s.io is a CRD group: its objects are checked with the typed
    # gateway-api crate (crds/tests/gateway_api_examples.rs).
    builtin_k8s_io = group.endswith(".k8s.io") and group != "gateway.networking.k8s.io"
    return group == "" or builtin_k8s_io or group in {"apps", "batch", "policy", "autoscaling"}


@pytest.mark.parametrize("directory", EXAMPLE_DIRS)
def test_example_folder_has_manifests_and_readme(directory):
    assert manifests(directory), f"examples/{directory} has no manifests"
    assert (REPO / "examples" / directory / "README.md").is_file()


def test_builtin_objects_are_valid_kubernetes():
    checked = 0
    for path, obj in all_example_objects():
        assert {"apiVersion", "kind", "metadata"} <= set(obj), path
        assert obj["metadata"].get("name"), path
        if not is_builtin(obj):
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f'{path.relative_to(REPO)}: {obj["kind"]}/{obj["metadata"]["name"]} invalid at {list(err.path)}: {err.message}')
        checked += 1
    assert checked >= 6


def test_demo_workloads_run_locked_down():
    for path, obj in all_example_objects():
        if obj["kind"] != "Deployment":
            continue
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, path
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, path
            assert sc["capabilities"]["drop"] == ["ALL"], path
            assert c.get("resources", {}).get("requests"), path


def test_keygate_resources_match_the_crds():
    crds = {c["spec"]["names"]["kind"]: c for c in load_crds()}
    if not crds:
        pytest.fail("charts/keygate/crds/ is empty: cannot check the example resources against the CRDs")
    found = 0
    for path, obj in all_example_objects():
        if obj["apiVersion"].split("/")[0] != GROUP:
            continue
        assert obj["apiVersion"] == f"{GROUP}/{VERSION}", path
        assert obj["kind"] in crds, (path, obj["kind"])
        schema = strict_json_schema(served_schema(crds[obj["kind"]]))
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f'{path.relative_to(REPO)} {obj["kind"]}/{obj["metadata"]["name"]}: ' + "; ".join(
            f"{list(e.path)}: {e.message}" for e in errors)
        found += 1
    assert found >= 5


def test_gitops_team_folder_is_complete_and_consistent():
    objs = [o for _, o in manifests("gitops/team-a")]
    kinds = [o["kind"] for o in objs]
    for kind in ("Tenant", "IdentityProvider", "Role", "ApiKey"):
        assert kind in kinds, kind
    tenants = {o["metadata"]["name"] for o in objs if o["kind"] == "Tenant"}
    namespaces = {o["metadata"].get("namespace") for o in objs}
    assert len(namespaces) == 1 and None not in namespaces, "the team folder declares one namespace explicitly"
    roles = {o["metadata"]["name"] for o in objs if o["kind"] == "Role"}
    secrets = {o["metadata"]["name"] for o in objs if o["kind"] in ("Secret", "ExternalSecret", "SealedSecret")}
    for o in objs:
        spec = o.get("spec", {})
        if "tenantRef" in spec:
            assert spec["tenantRef"]["name"] in tenants, o["metadata"]["name"]
        if o["kind"] == "ApiKey":
            for role in spec.get("roles", []):
                assert role in roles, (o["metadata"]["name"], role)
        if o["kind"] == "IdentityProvider":
            assert spec["oidc"]["clientSecretRef"]["name"] in secrets, "the client secret's source is in the folder"
    # Raw secret values never live in Git.
    assert "Secret" not in kinds


def test_gitops_controllers_point_at_the_team_folder():
    objs = {o["kind"]: o for _, o in manifests("gitops") if o["kind"] in ("Application", "Kustomization", "GitRepository")}
    assert objs["Application"]["spec"]["source"]["path"] == "examples/gitops/team-a"
    assert objs["Kustomization"]["spec"]["path"] == "./examples/gitops/team-a"
    assert objs["Kustomization"]["spec"]["sourceRef"]["name"] == objs["GitRepository"]["metadata"]["name"]
    assert objs["Kustomization"]["spec"]["prune"] is True


def test_ingress_nginx_wiring():
    ingresses = [
        o for _, o in manifests("ingress-nginx")
        if o["kind"] == "Ingress" and "nginx.ingress.kubernetes.io/auth-url" in o["metadata"].get("annotations", {})
    ]
    assert ingresses
    for ing in ingresses:
        ann = ing["metadata"]["annotations"]
        assert ann["nginx.ingress.kubernetes.io/auth-url"].startswith(GATEWAY_URL + "/forward-auth?tenant=acme")
        # A browser starts on its own host's handoff path, never on the gateway's sign-in
        # page directly (the gateway's cookie never reaches the app host).
        assert ann["nginx.ingress.kubernetes.io/auth-signin"] == "https://$host/.keygate/callback?tenant=acme"
        assert ann["nginx.ingress.kubernetes.io/auth-response-headers"].split(",") == IDENTITY_HEADERS
    objs = [o for _, o in manifests("ingress-nginx")]
    handoff = [o for o in objs if o["kind"] == "Ingress" and "nginx.ingress.kubernetes.io/auth-url" not in o["metadata"].get("annotations", {})]
    assert len(handoff) == 1, "one unchecked Ingress for the handoff path"
    hosts = {r["host"] for o in ingresses for r in o["spec"]["rules"]}
    routed = {(r["host"], p["path"], p["pathType"], p["backend"]["service"]["name"]) for r in handoff[0]["spec"]["rules"] for p in r["http"]["paths"]}
    assert routed == {(h, "/.keygate/callback", "Exact", "keygate-gateway") for h in hosts}
    svc = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "keygate-gateway"][0]
    assert svc["spec"]["externalName"] == "keygate-gateway.keygate.svc.cluster.local"
    # The return URLs come back to the app host: the Tenant allows its origin.
    tenant = [o for _, o in manifests("acme") if o["kind"] == "Tenant"][0]
    for h in hosts:
        assert f"https://{h}" in tenant["spec"]["redirects"]["allowedOrigins"], h


def test_traefik_wiring():
    objs = manifests("traefik")
    mws = [o for _, o in objs if o["kind"] == "Middleware"]
    assert mws
    for mw in mws:
        fa = mw["spec"]["forwardAuth"]
        assert fa["address"].startswith(GATEWAY_URL + "/forward-auth?tenant=acme")
        assert fa["authResponseHeaders"] == IDENTITY_HEADERS
    routes = [o for _, o in objs if o["kind"] == "IngressRoute"]
    used = {m["name"] for r in routes for route in r["spec"]["routes"] for m in route.get("middlewares", [])}
    assert used == {m["metadata"]["name"] for m in mws}
    handoff = [route for r in routes for route in r["spec"]["routes"] if "/.keygate/callback" in route["match"]]
    assert len(handoff) == 1 and not handoff[0].get("middlewares"), "the handoff path is routed unchecked"
    assert handoff[0]["services"][0]["name"] == "keygate-gateway"


def test_envoy_wiring():
    text = "\n".join(p.read_text() for p in sorted((REPO / "examples" / "envoy-contour").rglob("*.yaml")))
    assert "envoy.filters.http.ext_authz" in text
    assert "path_prefix: /forward-auth" in text
    assert 'match: { path: "/.keygate/callback" }' in text and "disabled: true" in text
    assert "keygate-gateway.keygate.svc.cluster.local" in text
    for header in IDENTITY_HEADERS:
        assert header.lower() in text.lower(), header

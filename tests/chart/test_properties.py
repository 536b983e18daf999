"""The chart's security and availability properties, asserted on the rendered objects."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, Rendering, pod_templates, render, rendering_of, objects_of

GATEWAY = "keygate-gateway"
OPERATOR = "keygate-operator"
MIGRATE = "keygate-migrate"


def containers(template):
    spec = template["spec"]
    return spec.get("initContainers", []) + spec["containers"]


# --- security --------------------------------------------------------------------------


def test_every_container_is_locked_down(rendering: Rendering):
    templates = pod_templates(rendering)
    assert len(templates) == 3, [n for n, _ in templates]
    for name, template in templates:
        pod_sc = template["spec"]["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert "hostNetwork" not in template["spec"] and "hostPID" not in template["spec"], name
        for c in containers(template):
            sc = c["securityContext"]
            where = f'{name}/{c["name"]}'
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            if "runAsUser" in sc:
                assert sc["runAsUser"] != 0, where


def test_default_uid_matches_the_image():
    r = rendering_of("default")
    for name, template in pod_templates(r):
        assert template["spec"]["securityContext"]["runAsUser"] == 65532, name
        assert template["spec"]["securityContext"]["runAsGroup"] == 65532, name


def test_platform_may_choose_the_uid():
    r = rendering_of("production")
    for name, template in pod_templates(r):
        sc = template["spec"]["securityContext"]
        assert "runAsUser" not in sc and "fsGroup" not in sc, name
        assert sc["runAsNonRoot"] is True, name


def test_gateway_has_no_kubernetes_token(rendering: Rendering):
    dep = rendering.get("Deployment", GATEWAY)
    spec = dep["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    sa = rendering.get("ServiceAccount", spec["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is False
    # No projected token or SA volume smuggled in another way.
    for vol in spec.get("volumes", []):
        assert "projected" not in vol, vol
        assert "serviceAccountToken" not in str(vol), vol
    # And no RBAC grants anything to the gateway's account.
    for binding in rendering.of_kind("RoleBinding") + rendering.of_kind("ClusterRoleBinding"):
        for subject in binding.get("subjects", []):
            assert subject["name"] != spec["serviceAccountName"], binding["metadata"]["name"]


def test_migration_job_has_no_token_and_sees_only_what_it_needs(rendering: Rendering):
    job = rendering.get("Job", MIGRATE)
    spec = job["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    secret_vol = next(v for v in spec["volumes"] if v["name"] == "secrets")
    assert [i["key"] for i in secret_vol["secret"]["items"]] == ["database-url", "master-keys"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_gateway_and_operator_never_get_the_schema_owners_database_login(rendering: Rendering):
    # The owner may drop the audit triggers and rewrite declared state: only the migration
    # Job holds it. Each long-running component signs in to the database as its own role.
    for kind_name, key in ((("Deployment", GATEWAY), "gateway-database-url"), (("Deployment", OPERATOR), "operator-database-url")):
        spec = rendering.get(*kind_name)["spec"]["template"]["spec"]
        items = [i["key"] for v in spec["volumes"] if v["name"] == "secrets" for i in v["secret"]["items"]]
        assert key in items and "database-url" not in items, (kind_name, items)
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["KEYGATE_DATABASE_URL_FILE"].endswith("/" + key), (kind_name, env)


def test_secrets_are_files_never_env_values(rendering: Rendering):
    secret_name = rendering.values()["secrets"]["existingSecret"] or "keygate-secrets"
    for name, template in pod_templates(rendering):
        for c in containers(template):
            for env in c.get("env", []):
                assert not env["name"].endswith(("_URL", "_KEYS")) or env["name"] == "KEYGATE_PUBLIC_URL", (name, env)
                assert "secretKeyRef" not in str(env.get("valueFrom", {})), (name, env)
            assert "envFrom" not in c, name
            assert not any(a.startswith("--") for a in c.get("args", [])), (name, c["args"])
        vols = {v["name"]: v for v in template["spec"]["volumes"]}
        assert vols["secrets"]["secret"]["secretName"] == secret_name
        assert vols["secrets"]["secret"]["defaultMode"] == 0o440


def test_file_variables_point_at_projected_keys(rendering: Rendering):
    for name, template in pod_templates(rendering):
        c = template["spec"]["containers"][0]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "secrets")
        assert mount["readOnly"] is True
        keys = {i["path"] for v in template["spec"]["volumes"] if v["name"] == "secrets" for i in v["secret"]["items"]}
        for env in c["env"]:
            if env["name"].endswith("_FILE"):
                path = env["value"]
                assert path.startswith(mount["mountPath"] + "/"), (name, env)
                assert path.rsplit("/", 1)[1] in keys, (name, env, keys)


def test_smtp_is_wired_only_when_enabled():
    off = rendering_of("default").get("Deployment", GATEWAY)
    on = rendering_of("external-secrets").get("Deployment", GATEWAY)
    env_off = {e["name"] for e in off["spec"]["template"]["spec"]["containers"][0]["env"]}
    env_on = {e["name"]: e.get("value") for e in on["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KEYGATE_SMTP_URL_FILE" not in env_off
    assert env_on["KEYGATE_SMTP_URL_FILE"] == "/etc/keygate/secrets/smtp-url"
    assert env_on["KEYGATE_SMTP_FROM"] == "keygate <no-reply@example.com>"
    # The operator never gets the SMTP credentials.
    op = rendering_of("external-secrets").get("Deployment", OPERATOR)
    items = [i["key"] for v in op["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets" for i in v["secret"]["items"]]
    assert "smtp-url" not in items


def test_existing_secret_means_no_chart_secret():
    for name in ("default", "external-secrets", "production"):
        assert rendering_of(name).of_kind("Secret") == [], name
    dep = rendering_of("external-secrets").get("Deployment", GATEWAY)
    vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    assert vol["secret"]["secretName"] == "keygate-from-eso"


def test_chart_created_secret_exists_before_the_migration_job():
    r = rendering_of("chart-secret")
    secret = r.get("Secret", "keygate-secrets")
    job = r.get("Job", MIGRATE)
    assert "pre-install" in secret["metadata"]["annotations"]["helm.sh/hook"]
    assert "pre-upgrade" in secret["metadata"]["annotations"]["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    # Never deleted after the hooks ran: the Deployments mount it.
    assert "hook-succeeded" not in secret["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert set(secret["stringData"]) == {
        "database-url", "gateway-database-url", "operator-database-url", "redis-url", "master-keys",
    }
    # Pods roll when the chart-created Secret changes.
    for name, template in pod_templates(r):
        assert "checksum/secrets" in template["metadata"]["annotations"], name


def test_chart_created_secret_requires_its_values():
    with pytest.raises(Exception, match="secrets.masterKeys is required"):
        render({"secrets": {
            "existingSecret": "", "databaseUrl": "postgres://db/k", "gatewayDatabaseUrl": "postgres://gw@db/k",
            "operatorDatabaseUrl": "postgres://op@db/k", "redisUrl": "redis://r",
        }})
    with pytest.raises(Exception, match="secrets.gatewayDatabaseUrl is required"):
        render({"secrets": {"existingSecret": "", "databaseUrl": "postgres://db/k", "redisUrl": "redis://r"}})


def test_operator_has_its_token_and_least_privilege_rbac():
    r = rendering_of("default")
    dep = r.get("Deployment", OPERATOR)
    spec = dep["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True
    sa_name = spec["serviceAccountName"]
    role = r.get("ClusterRole", OPERATOR)
    rules = role["rules"]
    allowed = {(g, res, v) for rule in rules for g in rule["apiGroups"] for res in rule["resources"] for v in rule["verbs"]}
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
    kinds = ["tenants", "identityproviders", "roles", "apikeys", "oauthclients"]
    for k in kinds:
        assert {("keygate.dev", k, v) for v in ("get", "list", "watch", "patch", "update")} <= allowed
        assert ("keygate.dev", f"{k}/status", "patch") in allowed
        assert ("keygate.dev", f"{k}/finalizers", "update") in allowed
        assert ("keygate.dev", k, "create") not in allowed and ("keygate.dev", k, "delete") not in allowed
    for v in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert ("", "secrets", v) in allowed
    assert {("events.k8s.io", "events", "create"), ("", "events", "create")} <= allowed
    # Nothing beyond that: no pods, no RBAC, no CRDs, no leases cluster-wide.
    groups_resources = {(g, res) for g, res, _ in allowed}
    assert groups_resources <= {("keygate.dev", k) for k in kinds} | {("keygate.dev", f"{k}/{s}") for k in kinds for s in ("status", "finalizers")} | {("", "secrets"), ("", "events"), ("events.k8s.io", "events")}
    binding = r.get("ClusterRoleBinding", OPERATOR)
    assert binding["roleRef"]["name"] == OPERATOR
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": "keygate"}]
    # Leases: only in its own namespace, get/update only on its own Lease.
    lease_role = r.get("Role", f"{OPERATOR}-leader-election")
    assert lease_role["metadata"]["namespace"] == "keygate"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    lease = env["KEYGATE_LEASE_NAME"]["value"]
    for rule in lease_role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        if rule["verbs"] != ["create"]:
            assert rule["resourceNames"] == [lease]
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "KEYGATE_WATCH_NAMESPACES" not in env


def test_operator_watching_namespaces_gets_roles_there_only():
    r = rendering_of("namespaced-operator")
    assert r.of_kind("ClusterRole") == [] and r.of_kind("ClusterRoleBinding") == []
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in r.of_kind("Role")}
    assert roles == {("team-a", OPERATOR), ("team-b", OPERATOR), ("keygate", f"{OPERATOR}-leader-election")}
    env = {e["name"]: e.get("value") for e in r.get("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KEYGATE_WATCH_NAMESPACES"] == "team-a,team-b"


def test_people_get_aggregated_roles_without_status_write():
    r = rendering_of("default")
    edit = r.get("ClusterRole", "keygate-edit")
    view = r.get("ClusterRole", "keygate-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for rule in edit["rules"]:
        assert not any(res.endswith("/status") for res in rule["resources"])
    for rule in view["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}


def test_network_policies(rendering: Rendering):
    values = rendering.values()
    policies = {p["metadata"]["name"]: p for p in rendering.of_kind("NetworkPolicy")}
    if not values["networkPolicy"]["enabled"]:
        assert policies == {}
        return
    gw = policies[GATEWAY]["spec"]
    assert gw["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert set(gw["policyTypes"]) == {"Ingress", "Egress"}
    # In: ingress controllers + Prometheus on the HTTP port; the gRPC ext_authz port (when
    # served) from the ingress controllers and the Gateway API implementations, not Prometheus.
    np = values["networkPolicy"]
    grpc_on = values["gateway"]["extAuthz"]["enabled"]
    assert len(gw["ingress"]) == (2 if grpc_on else 1)
    assert gw["ingress"][0]["from"] == np["ingressControllers"] + np["prometheus"] + np["extraIngressPeers"]
    assert gw["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    if grpc_on:
        assert gw["ingress"][1]["from"] == np["ingressControllers"] + np["extAuthzPeers"] + np["extraIngressPeers"]
        assert gw["ingress"][1]["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    # Out: DNS first, then only the configured ports.
    assert gw["egress"][0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert gw["egress"][0]["to"] == np["egress"]["dns"]
    for rule in gw["egress"]:
        assert rule.get("ports"), f"egress rule without ports allows everything: {rule}"
    ports = {p["port"] for rule in gw["egress"] for p in rule["ports"]}
    expected = {53} | {p["port"] for p in np["egress"]["postgres"]["ports"] + np["egress"]["redis"]["ports"] + np["egress"]["identityProviders"]["ports"]}
    if values["config"]["smtp"]["enabled"]:
        expected |= {p["port"] for p in np["egress"]["smtp"]["ports"]}
    for extra in np["egress"]["extra"]:
        expected |= {p["port"] for p in extra["ports"]}
    assert ports == expected
    # Operator: only Prometheus in.
    op = policies[OPERATOR]["spec"]
    assert op["policyTypes"] == ["Ingress"]
    assert op["ingress"][0]["from"] == np["prometheus"]
    # Migration Job: nothing in, DNS and Postgres out; in place before the Job.
    mg = policies[MIGRATE]
    assert mg["spec"].get("ingress") in (None, [])
    assert set(mg["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert {p["port"] for rule in mg["spec"]["egress"] for p in rule["ports"]} == {53} | {p["port"] for p in np["egress"]["postgres"]["ports"]}
    assert int(mg["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_network_policy_narrowed_destinations():
    gw = rendering_of("production").get("NetworkPolicy", GATEWAY)["spec"]
    by_port = {rule["ports"][0]["port"]: rule for rule in gw["egress"]}
    assert by_port[5432]["to"] == [{"ipBlock": {"cidr": "10.10.0.0/24"}}]
    assert by_port[6380]["to"] == [{"ipBlock": {"cidr": "10.10.1.0/24"}}]
    assert by_port[443]["to"][0]["ipBlock"]["except"] == ["10.0.0.0/8"]
    assert 587 in by_port and 4317 in by_port
    default = rendering_of("default").get("NetworkPolicy", GATEWAY)["spec"]
    assert 587 not in {p["port"] for rule in default["egress"] for p in rule["ports"]}


# --- availability ----------------------------------------------------------------------


def test_probes_and_resources_everywhere(rendering: Rendering):
    for name, template in pod_templates(rendering):
        for c in containers(template):
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], name
            assert res["limits"]["memory"], name
            if name.startswith("Deployment/"):
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert probe in c, (name, probe)
    gw = rendering.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["startupProbe"]["httpGet"]["path"] == "/healthz"
    op = rendering.get("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    assert op["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert op["ports"] == [{"name": "metrics", "containerPort": 8081, "protocol": "TCP"}]


def test_gateway_rolls_without_losing_capacity(rendering: Rendering):
    dep = rendering.get("Deployment", GATEWAY)
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert c["args"] == ["gateway"]
    assert {"name": "KEYGATE_LISTEN", "value": "0.0.0.0:8080"} in c["env"]


def test_shutdown_drain_fits_the_grace_period(rendering: Rendering):
    """SIGTERM comes after the preStop sleep; the gateway then drains for what it is told and
    must exit before Kubernetes kills it at the end of the grace period."""
    spec = rendering.get("Deployment", GATEWAY)["spec"]["template"]["spec"]
    c = spec["containers"][0]
    grace = spec["terminationGracePeriodSeconds"]
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    env = {e["name"]: e.get("value") for e in c["env"]}
    drain = int(env["KEYGATE_SHUTDOWN_DRAIN_SECONDS"])
    assert drain >= 1
    assert pre_stop + drain + 5 == grace, (pre_stop, drain, grace)
    values = rendering.values()["gateway"]
    assert grace == values["terminationGracePeriodSeconds"]


def test_shutdown_values_follow_each_other_and_too_short_a_grace_is_refused():
    r = Rendering("longer", render({"gateway": {"terminationGracePeriodSeconds": 90, "preStopSleepSeconds": 10}}))
    c = r.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "KEYGATE_SHUTDOWN_DRAIN_SECONDS", "value": "75"} in c["env"]
    with pytest.raises(Exception, match="must exceed gateway.preStopSleepSeconds"):
        render({"gateway": {"terminationGracePeriodSeconds": 10, "preStopSleepSeconds": 5}})


def test_hpa_toggles(rendering: Rendering):
    values = rendering.values()["gateway"]
    dep = rendering.get("Deployment", GATEWAY)
    hpas = rendering.of_kind("HorizontalPodAutoscaler")
    if values["autoscaling"]["enabled"]:
        assert len(hpas) == 1
        hpa = hpas[0]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
        assert hpa["spec"]["minReplicas"] == values["autoscaling"]["minReplicas"]
        assert hpa["spec"]["maxReplicas"] == values["autoscaling"]["maxReplicas"]
        # The Deployment leaves the replica count to the HPA, so upgrades do not reset it.
        assert "replicas" not in dep["spec"]
    else:
        assert hpas == []
        assert dep["spec"]["replicas"] == values["replicaCount"]


def test_default_is_three_gateways_and_two_operators():
    r = rendering_of("default")
    assert r.get("HorizontalPodAutoscaler", GATEWAY)["spec"]["minReplicas"] == 3
    assert r.get("Deployment", OPERATOR)["spec"]["replicas"] == 2
    assert rendering_of("fixed-five").get("Deployment", GATEWAY)["spec"]["replicas"] == 5


def test_pdb_consistent_with_replicas(rendering: Rendering):
    values = rendering.values()["gateway"]
    replicas = values["autoscaling"]["minReplicas"] if values["autoscaling"]["enabled"] else values["replicaCount"]
    pdb = rendering.find("PodDisruptionBudget", GATEWAY)
    if replicas < 2:
        assert pdb is None, "a PDB over a single replica blocks every drain"
        return
    assert pdb is not None
    min_available = pdb["spec"]["minAvailable"]
    assert isinstance(min_available, int)
    assert 1 <= min_available < replicas, (min_available, replicas)
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    dep = rendering.get("Deployment", GATEWAY)
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    # Operator: maxUnavailable 1 when there is more than one replica, none otherwise.
    op_replicas = rendering.get("Deployment", OPERATOR)["spec"]["replicas"]
    op_pdb = rendering.find("PodDisruptionBudget", OPERATOR)
    if op_replicas >= 2:
        assert op_pdb["spec"]["maxUnavailable"] == 1
    else:
        assert op_pdb is None


def test_single_replica_has_no_pdb():
    r = rendering_of("single-replica")
    assert r.of_kind("PodDisruptionBudget") == []
    assert r.get("Deployment", GATEWAY)["spec"]["replicas"] == 1


def test_pdb_that_would_block_drains_is_refused():
    with pytest.raises(Exception, match="node drains would block"):
        render({"gateway": {"autoscaling": {"enabled": False}, "replicaCount": 3, "pdb": {"minAvailable": 3}}})
    with pytest.raises(Exception, match="node drains would block"):
        render({"gateway": {"autoscaling": {"minReplicas": 2}, "pdb": {"minAvailable": 2}}})


def test_pdb_follows_hpa_minimum():
    r = rendering_of("production")
    assert r.get("PodDisruptionBudget", GATEWAY)["spec"]["minAvailable"] == 2
    r = rendering_of("fixed-five")
    assert r.get("PodDisruptionBudget", GATEWAY)["spec"]["minAvailable"] == 4


def test_topology_spread_over_zones_and_nodes(rendering: Rendering):
    spec = rendering.get("Deployment", GATEWAY)["spec"]["template"]["spec"]
    tsc = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
    assert set(tsc) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    selector = rendering.get("Deployment", GATEWAY)["spec"]["selector"]
    for c in tsc.values():
        assert c["labelSelector"] == selector
        assert c["maxSkew"] == 1
        assert c["matchLabelKeys"] == ["pod-template-hash"]


# --- services, monitoring, image, notes -------------------------------------------------


def test_services_select_their_pods(rendering: Rendering):
    for svc_name, dep_name, port in ((GATEWAY, GATEWAY, "http"), (f"{OPERATOR}-metrics", OPERATOR, "metrics")):
        svc = rendering.get("Service", svc_name)
        dep = rendering.get("Deployment", dep_name)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        assert svc["spec"]["ports"][0]["targetPort"] == port
        container_ports = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert port in container_ports
    assert rendering.get("Service", GATEWAY)["spec"]["ports"][0]["port"] == 8080


def test_servicemonitor_toggles(rendering: Rendering):
    monitors = rendering.of_kind("ServiceMonitor")
    values = rendering.values()["serviceMonitor"]
    if not values["enabled"]:
        assert monitors == []
        return
    assert {m["metadata"]["name"] for m in monitors} == {"keygate-gateway", "keygate-operator"}
    for m in monitors:
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(m["spec"]) == {"selector", "namespaceSelector", "endpoints"}
        for k, v in values["labels"].items():
            assert m["metadata"]["labels"][k] == v
        ep = m["spec"]["endpoints"][0]
        assert ep["path"] == "/metrics"
        assert ep["interval"] == values["interval"]
        # The ServiceMonitor's selector finds exactly one of the chart's Services, by port name.
        svcs = [s for s in rendering.of_kind("Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in m["spec"]["selector"]["matchLabels"].items())]
        assert len(svcs) == 1
        assert ep["port"] in {p["name"] for p in svcs[0]["spec"]["ports"]}


def test_image_matches_the_dockerfile_and_app_version(chart):
    r = rendering_of("default")
    expected = f'ghcr.io/keygate/keygate:{chart.metadata["appVersion"]}'
    for name, template in pod_templates(r):
        assert template["spec"]["containers"][0]["image"] == expected, name
    digest = rendering_of("production")
    for name, template in pod_templates(digest):
        assert template["spec"]["containers"][0]["image"] == "ghcr.io/keygate/keygate@sha256:" + "ab" * 32


def test_public_url_and_notes():
    r = rendering_of("external-secrets")
    env = {e["name"]: e.get("value") for e in r.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KEYGATE_PUBLIC_URL"] == "https://auth.example.com"
    assert "Issuer:           https://auth.example.com/t/<tenant>" in r.notes
    assert (
        "https://auth.example.com/.well-known/oauth-authorization-server/t/<tenant>" in r.notes
    )
    assert "http://keygate-gateway.keygate.svc.cluster.local:8080/forward-auth?tenant=<tenant>" in r.notes
    assert "WARNING: config.publicUrl is not set" in rendering_of("default").notes
    assert "plain http" in rendering_of("chart-secret").notes
    # Without publicUrl the chart Ingress' host is used.
    ing = rendering_of("namespaced-operator")
    env = {e["name"]: e.get("value") for e in ing.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KEYGATE_PUBLIC_URL"] == "https://auth.example.com"


def page_link_prefixes():
    """First path segment of every absolute link, form action and asset in the page templates."""
    templates = REPO / "gateway" / "src" / "pages" / "templates"
    found = set()
    for page in templates.glob("*.html"):
        for target in re.findall(r'(?:href|src|action)="(/[^"{]*)', page.read_text()):
            found.add("/" + target.lstrip("/").split("/", 1)[0])
    return found


def test_ingress_routes_every_path_the_pages_use_and_nothing_in_cluster():
    ing = rendering_of("namespaced-operator").get("Ingress", GATEWAY)
    gateway_rule = [r for r in ing["spec"]["rules"] if r["host"] == "auth.example.com"]
    paths = [p["path"] for rule in gateway_rule for p in rule["http"]["paths"]]
    used = page_link_prefixes()
    assert {"/t", "/assets"} <= used, used
    # A stylesheet or form the Ingress does not route is a broken page for every person.
    assert used <= set(paths), (used, paths)
    # The tenants' metadata lives where RFC 8414 puts it, outside /t.
    assert "/.well-known/oauth-authorization-server" in paths, paths
    assert not {"/forward-auth", "/metrics", "/healthz", "/readyz"} & set(paths), paths
    assert ing["spec"]["tls"][0]["hosts"] == ["auth.example.com"]
    assert ing["spec"]["ingressClassName"] == "nginx"


def handoff_path():
    """The reserved path the gateway serves on app hosts, read from its source."""
    source = (REPO / "gateway" / "src" / "return_url.rs").read_text()
    return re.search(r'pub const HANDOFF_PATH: &str = "([^"]+)";', source).group(1)


def test_ingress_routes_the_handoff_path_of_every_app_host_and_nothing_else_there():
    ing = rendering_of("namespaced-operator").get("Ingress", GATEWAY)
    by_host = {r["host"]: r["http"]["paths"] for r in ing["spec"]["rules"]}
    assert set(by_host) == {"auth.example.com", "demo.example.com", "orders.example.org"}
    for host in ("demo.example.com", "orders.example.org"):
        # Only the handoff path: the app's own paths stay with the app's Ingress.
        assert [(p["path"], p["pathType"]) for p in by_host[host]] == [(handoff_path(), "Exact")], host
        assert by_host[host][0]["backend"]["service"] == {"name": GATEWAY, "port": {"name": "http"}}
    # Without app hosts only the gateway's host is routed.
    plain = objects_of(render({"gateway": {"ingress": {"enabled": True, "host": "auth.example.com"}}}))
    ing = [o for o in plain if o["kind"] == "Ingress"][0]
    assert [r["host"] for r in ing["spec"]["rules"]] == ["auth.example.com"]


def test_trusted_proxies_and_logging_env():
    env = {e["name"]: e.get("value") for e in rendering_of("production").get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KEYGATE_TRUSTED_PROXIES"] == "10.244.0.0/16,fd00::/8"
    assert env["KEYGATE_LOG_FORMAT"] == "json"
    assert env["KEYGATE_LOG"] == "info,keygate_gateway=debug"
    assert env["RUST_BACKTRACE"] == "1"
    default_env = {e["name"] for e in rendering_of("default").get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KEYGATE_TRUSTED_PROXIES" not in default_env


def test_migration_is_a_pre_install_and_pre_upgrade_hook(rendering: Rendering):
    job = rendering.get("Job", MIGRATE)
    ann = job["metadata"]["annotations"]
    assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert set(ann["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["activeDeadlineSeconds"] > 0


def test_migrations_can_be_turned_off():
    objs = objects_of(render({"migrations": {"enabled": False}}))
    assert not [o for o in objs if o["kind"] == "Job"]
    assert not [o for o in objs if o["metadata"]["name"] == MIGRATE]


def test_grpc_ext_authz_port_is_exposed_or_off():
    """The gRPC ext_authz port: named in the Deployment, the Service (HTTP/2 cleartext) and
    the NetworkPolicy, and the gateway listens there; turned off, none of them and the
    gateway listens nowhere for it."""
    on = rendering_of("default")
    svc = on.get("Service", GATEWAY)["spec"]["ports"]
    grpc = [p for p in svc if p["name"] == "grpc"]
    assert grpc == [{"name": "grpc", "port": 9191, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]
    container = on.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "grpc", "containerPort": 9191, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KEYGATE_EXT_AUTHZ_LISTEN"] == "0.0.0.0:9191"
    assert "KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER" not in env

    custom = Rendering("custom", render({"gateway": {"extAuthz": {"port": 9001, "requirementsHeader": "x-keygate-requirements"}}}))
    container = custom.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KEYGATE_EXT_AUTHZ_LISTEN"] == "0.0.0.0:9001"
    assert env["KEYGATE_EXT_AUTHZ_REQUIREMENTS_HEADER"] == "x-keygate-requirements"
    assert [p["port"] for p in custom.get("Service", GATEWAY)["spec"]["ports"] if p["name"] == "grpc"] == [9001]

    # No host defaults: no config file.
    assert not on.find("ConfigMap", f"{GATEWAY}-config")
    assert "KEYGATE_CONFIG" not in {e["name"] for e in on.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["env"]}

    off = Rendering("custom", render({"gateway": {"extAuthz": {"enabled": False}}}))
    assert [p["name"] for p in off.get("Service", GATEWAY)["spec"]["ports"]] == ["http"]
    container = off.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert {e["name"]: e.get("value") for e in container["env"]}["KEYGATE_EXT_AUTHZ_LISTEN"] == "off"
    ingress = off.get("NetworkPolicy", GATEWAY)["spec"]["ingress"]
    assert all(p["port"] != "grpc" for rule in ingress for p in rule["ports"])


def test_grpc_host_requirements_reach_the_gateway_config_file():
    """gateway.extAuthz.hostRequirements (for proxies that send neither context extensions
    nor a header, such as Istio's envoyExtAuthzGrpc) become the gateway's config file:
    a ConfigMap mounted read-only, named by KEYGATE_CONFIG, its checksum on the pods so a
    change rolls them; the values file of examples/gateway-api/istio renders so."""
    values = yaml.safe_load((REPO / "examples/gateway-api/istio/helm/keygate-values.yaml").read_text())
    hosts = values["gateway"]["extAuthz"]["hostRequirements"]
    assert hosts == {"demo.example.com": "tenant=acme&role=orders-reader"}
    r = Rendering("istio", render(values))
    config = yaml.safe_load(r.get("ConfigMap", f"{GATEWAY}-config")["data"]["config.yaml"])
    assert config == {"ext_authz_host_requirements": hosts}
    pod = r.get("Deployment", GATEWAY)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KEYGATE_CONFIG"] == "/etc/keygate/config.yaml"
    assert {"name": "config", "mountPath": "/etc/keygate", "readOnly": True} in container["volumeMounts"]
    assert {"name": "config", "configMap": {"name": f"{GATEWAY}-config"}} in pod["spec"]["volumes"]
    # The Gateway's Envoy pods (in `demo`) may reach the gRPC port.
    grpc_rule = [rule for rule in r.get("NetworkPolicy", GATEWAY)["spec"]["ingress"] if rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "demo"}}} in grpc_rule[0]["from"]
    checksum = pod["metadata"]["annotations"]["checksum/config"]
    other = Rendering("istio2", render({"gateway": {"extAuthz": {"hostRequirements": {"demo.example.com": "tenant=acme"}}}}))
    assert other.get("Deployment", GATEWAY)["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum
    # The gRPC service off: nothing reads the defaults, so nothing is rendered.
    off = Rendering("off", render({"gateway": {"extAuthz": {"enabled": False, "hostRequirements": hosts}}}))
    assert not off.find("ConfigMap", f"{GATEWAY}-config")

"""values.schema.json: a typo or a wrong type in values fails before anything is applied."""

from __future__ import annotations

import json
import re

import helm_python as helm
import jsonschema
import pytest
import yaml

from conftest import CHART, KUBE_VERSION, MASTER_KEYS, REPO, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

# Objects handed to Kubernetes as written; Kubernetes validates their inside.
PASSTHROUGH = {
    "/properties/global",
    "/definitions/affinity/properties/nodeAffinity",
    "/definitions/affinity/properties/podAffinity",
    "/definitions/affinity/properties/podAntiAffinity",
}


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, child in node.items():
            yield from walk(child, f"{path}/{key}")
    elif isinstance(node, list):
        for idx, child in enumerate(node):
            yield from walk(child, f"{path}/{idx}")


def test_schema_is_valid_draft7():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_every_object_level_is_closed():
    open_objects = []
    for path, node in walk(SCHEMA):
        types = node.get("type")
        is_object = types == "object" or (isinstance(types, list) and "object" in types)
        if not is_object or path in PASSTHROUGH:
            continue
        ap = node.get("additionalProperties", True)
        if ap is True:
            open_objects.append(path)
    assert open_objects == [], f"objects accepting unknown keys: {open_objects}"


def test_defaults_match_the_schema():
    jsonschema.Draft7Validator(SCHEMA).validate(DEFAULTS)


def test_every_default_key_is_in_the_schema_and_documented():
    """values.yaml, the schema and docs/helm-values.md describe the same keys."""
    doc = (REPO / "docs" / "helm-values.md").read_text()

    def leaves(values, prefix=""):
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and not path.endswith(("Labels", "Annotations", "annotations", "labels", "nodeSelector", "affinity", "resources")):
                yield from leaves(value, path + ".")
            else:
                yield path

    missing = [p for p in leaves(DEFAULTS) if f"`{p}`" not in doc]
    assert missing == [], f"values missing from docs/helm-values.md: {missing}"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"gatway": {"replicaCount": 2}}, "gatway"),
        ({"gateway": {"replicaCont": 3}}, "replicaCont"),
        ({"gateway": {"autoscaling": {"enabeld": False}}}, "enabeld"),
        ({"operator": {"watchNamespace": ["a"]}}, "watchNamespace"),
        ({"networkPolicy": {"egress": {"postgress": {}}}}, "postgress"),
        ({"secrets": {"existingSecrets": "x"}}, "existingSecrets"),
        ({"gateway": {"resources": {"request": {"cpu": "1"}}}}, "request"),
        ({"gateway": {"replicaCount": "3"}}, "replicaCount"),
        ({"gateway": {"replicaCount": 0}}, "replicaCount"),
        ({"config": {"logFormat": "text"}}, "logFormat"),
        ({"config": {"publicUrl": "https://auth.example.com/"}}, "publicUrl"),
        ({"config": {"publicUrl": "auth.example.com"}}, "publicUrl"),
        ({"config": {"trustedProxies": ["10.0.0.1"]}}, "trustedProxies"),
        ({"secrets": {"masterKeys": "k1:tooshort"}}, "masterKeys"),
        ({"secrets": {"databaseUrl": "mysql://db"}}, "databaseUrl"),
        ({"gateway": {"topologySpread": {"zone": "Always"}}}, "zone"),
        ({"networkPolicy": {"ingressControllers": [{"namespaceSelecter": {}}]}}, "namespaceSelecter"),
        ({"gateway": {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}}, "efect"),
        ({"podSecurity": {"runAsUser": 0}}, "runAsUser"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
)
def test_bad_values_fail_schema_validation(chart, values, message):
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(chart.merge_values(values))
    # The same values make the install itself fail (Helm validates before rendering) ...
    with pytest.raises(helm.HelmValuesError):
        render(values)
    # ... and lint reports an error.
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"], values


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"secrets": {"existingSecret": "", "databaseUrl": "postgresql://u:p@h/db", "redisUrl": "rediss://:p@h:6380/1", "masterKeys": MASTER_KEYS}},
        {"config": {"publicUrl": "https://example.com/auth"}},
        {"config": {"trustedProxies": ["10.0.0.0/8", "2001:db8::/32"]}},
        {"gateway": {"autoscaling": {"targetMemoryUtilizationPercentage": None}}},
        {"podSecurity": {"runAsUser": None}},
    ],
)
def test_good_values_pass(chart, values):
    chart.validate_schema(chart.merge_values(values))

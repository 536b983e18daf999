"""Helpers over the generated CRDs in charts/keygate/crds/: loading them, checking that their
schemas are structural (what the API server requires of apiextensions.k8s.io/v1), and turning
an openAPIV3Schema into a JSON Schema that rejects unknown fields the way
`kubectl apply --validate=strict` does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from conftest import CHART

CRD_DIR = CHART / "crds"
GROUP = "keygate.dev"
VERSION = "v1alpha1"
KINDS = {"Tenant": "tenants", "IdentityProvider": "identityproviders", "Role": "roles", "ApiKey": "apikeys", "OAuthClient": "oauthclients"}

# Keywords a structural schema may use for value validation under allOf/anyOf/oneOf/not.
_COMBINATORS = ("allOf", "anyOf", "oneOf", "not")


def crd_files() -> list[Path]:
    if not CRD_DIR.is_dir():
        return []
    return sorted(p for p in CRD_DIR.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_crds() -> list[dict[str, Any]]:
    crds = []
    for path in crd_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = path.name
                crds.append(doc)
    return crds


def structural_problems(schema: dict[str, Any], path: str = "", *, in_combinator: bool = False, root: bool = True) -> list[str]:
    """Violations of the structural-schema rules (a practical subset of
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
    """
    problems: list[str] = []
    where = path or "<root>"
    if not isinstance(schema, dict):
        return [f"{where}: schema is not an object"]
    for forbidden in ("$ref", "definitions", "$schema", "id", "patternProperties", "dependencies", "additionalItems"):
        if forbidden in schema:
            problems.append(f"{where}: '{forbidden}' is not allowed in a CRD schema")
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if not in_combinator and not schema.get("type") and not int_or_string and not preserve:
        problems.append(f"{where}: no type (structural schemas need one on every node)")
    if in_combinator:
        for key in ("type", "default", "nullable", "additionalProperties", "description",
                    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                    "x-kubernetes-int-or-string"):
            if key in schema:
                problems.append(f"{where}: '{key}' inside allOf/anyOf/oneOf/not is not structural")
    if "properties" in schema and isinstance(schema.get("additionalProperties"), (dict, bool)) and schema.get("additionalProperties") is not False:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if schema.get("type") == "array" and "items" not in schema and not in_combinator:
        problems.append(f"{where}: array without items")
    if root and "metadata" in schema.get("properties", {}):
        meta = schema["properties"]["metadata"]
        extra = set(meta.get("properties", {})) - {"name", "generateName"}
        if extra:
            problems.append(f"{where}/metadata: only name and generateName may be restricted, not {sorted(extra)}")
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}", in_combinator=in_combinator, root=False)
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]", in_combinator=in_combinator, root=False)
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}{{}}", in_combinator=in_combinator, root=False)
    for comb in _COMBINATORS:
        subs = schema.get(comb)
        if subs is None:
            continue
        for idx, sub in enumerate(subs if isinstance(subs, list) else [subs]):
            if int_or_string and comb == "anyOf" and sub in ({"type": "integer"}, {"type": "string"}):
                continue  # the one allowed pattern for x-kubernetes-int-or-string
            problems += structural_problems(sub, f"{path}<{comb}{idx}>", in_combinator=True, root=False)
            # Fields named inside a junctor must also be specified outside of it.
            for field in sub.get("properties", {}) if isinstance(sub, dict) else {}:
                if field not in schema.get("properties", {}):
                    problems.append(f"{where}: '{field}' appears only inside {comb}")
    return problems


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema as a JSON Schema that refuses unknown fields (the API server prunes
    or, with strict field validation, rejects them) and honours `nullable`."""
    out = copy.deepcopy(schema)

    def fix(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if node.get("nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if node.get("x-kubernetes-int-or-string") is True and "type" not in node:
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if ("properties" in node and "additionalProperties" not in node
                and node.get("x-kubernetes-preserve-unknown-fields") is not True):
            node["additionalProperties"] = False
        for key in ("properties",):
            for sub in node.get(key, {}).values():
                fix(sub)
        if isinstance(node.get("items"), dict):
            fix(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            fix(node["additionalProperties"])
        for comb in _COMBINATORS:
            subs = node.get(comb)
            for sub in (subs if isinstance(subs, list) else [subs] if subs else []):
                fix(sub)

    fix(out)
    # The API server fills these; a manifest may carry them.
    props = out.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    props.pop("status", None)
    return out


def served_schema(crd: dict[str, Any], version: str = VERSION) -> dict[str, Any]:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f'{crd["metadata"]["name"]} has no version {version}')

"""The image the chart runs is the one the Dockerfile builds: same binary path, same user,
no writable layer needed."""

from __future__ import annotations

import re

from conftest import REPO, rendering_of

DOCKERFILE = (REPO / "Dockerfile").read_text()
DOCKERIGNORE = (REPO / ".dockerignore").read_text().split()


def test_multi_stage_release_build():
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, re.M | re.I)
    assert len(stages) == 2, stages
    assert "cargo build --release --locked --bin keygate" in DOCKERFILE
    assert stages[1][0].startswith("gcr.io/distroless/cc-debian12:nonroot")


def test_the_runtime_image_carries_the_saml_libraries():
    # samael links libxmlsec1, libxmlsec1-openssl and libxml2: the build stage installs their
    # development packages and hands every library the binary links (ldd) to the runtime.
    for pkg in ("libxmlsec1-dev", "libxml2-dev", "libclang-common-14-dev"):
        assert pkg in DOCKERFILE, pkg
    assert "ldd /out/keygate" in DOCKERFILE
    assert re.search(r"^COPY --from=build /out/rootfs/ /$", DOCKERFILE, re.M)


def test_runtime_user_and_entrypoint_match_the_chart():
    assert re.search(r"^USER 65532:65532$", DOCKERFILE, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/keygate"]' in DOCKERFILE
    r = rendering_of("default")
    for obj in r.of_kind("Deployment") + r.of_kind("Job"):
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == 65532
        container = spec["containers"][0]
        # The entrypoint is the binary: the chart passes only the subcommand.
        assert "command" not in container
        assert container["args"][0] in {"gateway", "operator", "migrate"}


def test_build_context_leaves_out_build_outputs_and_git():
    for entry in ("target/", ".git", ".keygate/", "node_modules/"):
        assert entry in DOCKERIGNORE, entry

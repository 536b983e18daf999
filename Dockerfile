# syntax=docker/dockerfile:1
#
# One image for every keygate component: `keygate gateway`, `keygate operator`,
# `keygate migrate`, `keygate crds`. The Helm chart (charts/keygate) runs it as
# ghcr.io/keygate/keygate:<appVersion>, as uid/gid 65532 with a read-only root filesystem.
#
#   docker build -t ghcr.io/keygate/keygate:0.1.0 .

# ---- build -------------------------------------------------------------------------------
# Any Rust release at or above the workspace's rust-version (Cargo.toml) builds it.
ARG RUST_IMAGE=rust:1-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# SAML signatures are checked by xmlsec: samael's bindings build against libxmlsec1 and
# libxml2 (bindgen needs libclang and its headers).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libxmlsec1-dev libxml2-dev libssl-dev pkg-config libclang1-14 libclang-common-14-dev \
 && rm -rf /var/lib/apt/lists/*

COPY . .
# The cache mounts keep the registry and incremental build between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin keygate \
 && install -D -m 0755 target/release/keygate /out/keygate \
 && mkdir -p /out/rootfs \
 && for lib in $(ldd /out/keygate | awk '/=> \// {print $3}'); do \
      case "$(basename "$lib")" in libc.so*|libm.so*|libgcc_s.so*|ld-linux*) continue ;; esac; \
      dir="/out/rootfs$(dirname "$(realpath "$lib")")"; \
      mkdir -p "$dir" && cp -L "$lib" "$dir/$(basename "$lib")"; \
    done

# ---- runtime -----------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates and tzdata; no shell, no package manager.
# The :nonroot variant runs as uid/gid 65532. The shared libraries the binary links beyond
# those (libxmlsec1, libxmlsec1-openssl, libxml2 and theirs, for SAML) come from the build
# stage, which is the same Debian release, at the paths the dynamic loader searches.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="keygate" \
      org.opencontainers.image.description="Kubernetes-native authentication and authorization: gateway, operator, migrations" \
      org.opencontainers.image.source="https://github.com/keygate/keygate" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/rootfs/ /
COPY --from=build /out/keygate /usr/local/bin/keygate
USER 65532:65532
# 8080: gateway HTTP (KEYGATE_LISTEN); 8081: operator metrics and health (KEYGATE_OPERATOR_LISTEN).
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["gateway"]

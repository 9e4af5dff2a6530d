# The tj-deploy action image: the static (musl) binary, the OpenSSH client and CA certificates,
# nothing else. The binary is built outside the image, exactly as the release builds it:
#
#   CARGO_TARGET_DIR=target/musl cargo build --release --locked --target x86_64-unknown-linux-musl
#   docker build -t ghcr.io/org/tj-deploy:v1 .
#
# BASE is the Debian release the image is made of. CI builds with BASE set to a local rootfs
# (debootstrap --variant=minbase --include=openssh-client,ca-certificates, then podman import),
# which already has both packages, so the build needs no network there (.ci/image-test).
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}

# Versions come from the base's Debian release and its security updates; pinning exact Debian
# versions would break the build as soon as bookworm-security ships an OpenSSH fix.
# hadolint ignore=DL3008
RUN if ! dpkg -s openssh-client ca-certificates >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends openssh-client ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

ARG BINARY=target/musl/x86_64-unknown-linux-musl/release/tj-deploy
COPY ${BINARY} /usr/local/bin/tj-deploy

LABEL org.opencontainers.image.title="tj-deploy" \
      org.opencontainers.image.description="Deploy a Node.js app over SSH: backed up, atomic, verified, rolled back on failure" \
      org.opencontainers.image.licenses="MIT"

# No USER: GitHub runs Docker actions as root and mounts the workspace and the runner's
# file-command files ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY) owned by the runner; a non-root
# user could not write them. Exec form, so GitHub's INPUT_SSH-KEY style names reach the binary
# (a shell would drop variables with hyphens).
ENTRYPOINT ["/usr/local/bin/tj-deploy"]

# syntax=docker/dockerfile:1
#
# The stripe-webhook-server container image: two static binaries in an empty (`scratch`) image,
# running as a non-root user, with CA certificates for TLS to AWS:
#   /stripe-webhook-server   the server (the entrypoint)
#   /stripe-webhook          the operator CLI: docker run --entrypoint /stripe-webhook IMAGE verify /archive …
#
#   docker build -t stripe-webhook-server .            # builds both in the `build` stage
#   docker build --platform linux/amd64 -t stripe-webhook-server .   # an x86_64 image on an arm64
#                                                       # machine (Apple Silicon), under emulation
#   scripts/image                                       # the same image, offline: the binaries are
#                                                       # built on the host and fed to `runtime`
#
# It builds for the build platform's own architecture (the Rust image's host triple): x86_64 is
# built and tested; aarch64 builds the same way on an arm64 builder but is not tested here.
#
# The `runtime` stage takes everything from the stage named `build`; `scripts/image` replaces that
# stage with a local directory of the same shape (`--build-context build=DIR`), so no base image
# has to be pulled.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# crt-static on the gnu target links a static-pie glibc binary that runs in an empty image; the
# explicit --target (this platform's own triple) keeps build scripts and proc macros dynamic.
ENV RUSTFLAGS="-C target-feature=+crt-static"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
    && cargo build --release --locked -p stripe-webhook-server -p stripe-webhook --target "$target" \
    && mkdir -p /out/archive \
    && cp "target/$target/release/stripe-webhook-server" "target/$target/release/stripe-webhook" /out/

FROM scratch AS runtime
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/stripe-webhook-server /stripe-webhook-server
COPY --from=build /out/stripe-webhook /stripe-webhook
COPY --from=build --chown=65532:65532 /out/archive /archive
USER 65532:65532
# JSON logs (no colour codes in container logs), listen on every address, archive on the volume.
ENV LOG_FORMAT=json \
    HOST=0.0.0.0 \
    PORT=3001 \
    ARCHIVE_DIR=/archive \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 3001
# The file sink's archive is /archive: mount a persistent volume there, or use the Firehose sink.
# Without one the archive lives in the container's own filesystem and is lost when the container is
# replaced (the server warns at start). No VOLUME instruction: an anonymous volume would hide that.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/stripe-webhook-server", "healthcheck"]
ENTRYPOINT ["/stripe-webhook-server"]

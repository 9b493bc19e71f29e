# syntax=docker/dockerfile:1
#
# The stripe-webhook-server container image: a static binary in an empty (`scratch`) image,
# running as a non-root user, with CA certificates for TLS to AWS.
#
#   docker build -t stripe-webhook-server .            # builds the binary in the `build` stage
#   scripts/image                                       # the same image, offline: the binary is
#                                                       # built on the host and fed to `runtime`
#
# The `runtime` stage takes everything from the stage named `build`; `scripts/image` replaces that
# stage with a local directory of the same shape (`--build-context build=DIR`), so no base image
# has to be pulled.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# crt-static on the gnu target links a static-pie glibc binary that runs in an empty image; the
# explicit --target keeps build scripts and proc macros dynamic.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked -p stripe-webhook-server --target x86_64-unknown-linux-gnu \
    && mkdir -p /out/archive \
    && cp target/x86_64-unknown-linux-gnu/release/stripe-webhook-server /out/stripe-webhook-server

FROM scratch AS runtime
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/stripe-webhook-server /stripe-webhook-server
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

# Build stage: the release binary, with the default features (Redis) plus AMQP.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sidecast --features amqp \
    && cp target/release/sidecast /usr/local/bin/sidecast

# Runtime stage: a small Debian with the binary, running as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home sidecast
COPY --from=build /usr/local/bin/sidecast /usr/local/bin/sidecast
USER sidecast
ENV SIDECAST_SERVER__BIND=0.0.0.0:5000
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:5000/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/sidecast"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# floe's images: `--target api` and `--target worker`, from one build stage
# (plus the web front end's, for the API). Both carry the `floe` operator CLI:
# `docker compose exec worker floe doctor`.

FROM node:20-bookworm AS web
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
RUN npm run build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin floe-api --bin floe-worker --bin floe \
 && cp target/release/floe-api target/release/floe-worker target/release/floe /usr/local/bin/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app floe
WORKDIR /app
USER floe
ENV FLOE__LOG__FORMAT=json
COPY --from=build /usr/local/bin/floe /usr/local/bin/floe

FROM runtime AS api
COPY --from=build /usr/local/bin/floe-api /usr/local/bin/floe-api
# The chat at / and the inspector at /inspect (FLOE__HTTP__STATIC_DIR's default
# is frontend/dist, relative to /app).
COPY --from=web /src/frontend/dist /app/frontend/dist
ENV FLOE__HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["floe-api"]

FROM runtime AS worker
COPY --from=build /usr/local/bin/floe-worker /usr/local/bin/floe-worker
ENV FLOE__WORKER__HEALTH_LISTEN=0.0.0.0:9090
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:9090/readyz || exit 1
ENTRYPOINT ["floe-worker"]

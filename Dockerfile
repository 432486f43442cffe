# syntax=docker/dockerfile:1
# One image for both services: compose.yml runs `twitch-bi schedule` (the extractor) and
# `twitch-bi watch` (the transformer) from it. Build it with `make up`.

# --- build: the virtualenv with the pinned dependencies, and the parsed dbt project ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
RUN python -m venv /opt/venv
# Dependencies first, from the lock alone, so that a code change reuses this layer. Every
# pinned package has a wheel for Linux x86-64 and arm64: wheels only, nothing is compiled.
COPY requirements.lock ./
RUN pip install --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY twitch_bi ./twitch_bi
COPY extractor ./extractor
COPY transformer ./transformer
RUN pip install --no-deps .
COPY dbt ./dbt
# Parse the dbt project here, with what the containers will have: DATA_DIR where compose
# mounts ./data, and the defaults of .env.example. The transformer parses again at start
# (into data/state/dbt/target), reading this partial-parse file first (see
# DBT_PARTIAL_PARSE_FILE_PATH below): dbt then skips parsing when nothing differs, and
# reparses only what does when a setting differs. It also fails the build on a broken project.
RUN DATA_DIR=/data EXTRACT_EVERY_MINUTES=15 DUCKDB_MEMORY_LIMIT=2GB \
    dbt parse --project-dir /app/dbt --profiles-dir /app/dbt --target-path /app/dbt/target \
        --log-path /tmp/dbt-logs --no-send-anonymous-usage-stats \
    && rm -rf /tmp/dbt-logs

# --- runtime: the virtualenv and the dbt project, no compilers, no pip cache, no root ---
FROM python:3.11-slim
# The user the services run as; compose passes the uid and gid that own ./data on the host.
ARG HOST_UID=1000
ARG HOST_GID=1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    DATA_DIR=/data \
    DBT_PROJECT_DIR=/app/dbt \
    DBT_PROFILES_DIR=/app/dbt \
    DBT_PARTIAL_PARSE_FILE_PATH=/app/dbt/target/partial_parse.msgpack \
    RUNTIME__DLTHUB_TELEMETRY=false \
    LOG_FORMAT=json
# --non-unique: the host's ids may already be taken in the image (gid 20 on macOS).
RUN groupadd --non-unique --gid "$HOST_GID" twitch \
    && useradd --non-unique --uid "$HOST_UID" --gid "$HOST_GID" --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin twitch \
    && install -d -o "$HOST_UID" -g "$HOST_GID" /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/dbt /app/dbt
WORKDIR /app
USER ${HOST_UID}:${HOST_GID}
# compose.yml gives each service its own check; this one suits the default command.
HEALTHCHECK --interval=30s --timeout=20s --start-period=5m --retries=3 \
    CMD ["twitch-bi", "status", "--check", "transformer"]
ENTRYPOINT ["twitch-bi"]
CMD ["watch"]

# syntax=docker/dockerfile:1
# One image for both services: `twitch-bi schedule` (extractor) and `twitch-bi watch`.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-compile -r requirements.lock
COPY pyproject.toml README.md ./
COPY twitch_bi ./twitch_bi
COPY extractor ./extractor
COPY transformer ./transformer
RUN /opt/venv/bin/pip install --no-deps --no-compile .
COPY dbt ./dbt
# Parse the dbt project at build time, so the manifest ships with the image.
RUN DATA_DIR=/tmp/parse /opt/venv/bin/dbt parse --project-dir dbt --profiles-dir dbt \
        --target-path /app/dbt/target --no-send-anonymous-usage-stats \
    && rm -rf /tmp/parse dbt/logs

FROM python:3.11-slim
ARG UID=1000
ARG GID=1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    DBT_PROJECT_DIR=/app/dbt \
    DBT_PROFILES_DIR=/app/dbt \
    RUNTIME__DLTHUB_TELEMETRY=false \
    LOG_FORMAT=json
RUN groupadd --gid "$GID" twitch \
    && useradd --uid "$UID" --gid "$GID" --no-create-home --home-dir /data --shell /usr/sbin/nologin twitch \
    && mkdir -p /data \
    && chown "$UID:$GID" /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/dbt /app/dbt
WORKDIR /app
USER ${UID}:${GID}
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["twitch-bi", "status", "--check"]
ENTRYPOINT ["twitch-bi"]
CMD ["watch"]

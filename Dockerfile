# The pheromone image: the CLI as entrypoint, so `docker run IMAGE serve --only store` is
# `pheromone serve --only store`. compose.yaml runs one container per service from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the wheel needs (pyproject's readme is README.md); tests, docs and bench stay out.
# The exact versions of requirements-runtime.lock (the dependencies and the server extra: the image runs the
# services and the CLI), hash-checked; then the project itself with that extra, without resolving again.
COPY pyproject.toml README.md requirements-runtime.lock /build/
COPY contracts /build/contracts
COPY services /build/services
COPY pheromone /build/pheromone
RUN pip install --require-hashes --no-deps -r /build/requirements-runtime.lock \
    && pip install --no-deps '/build[server]' \
    && rm -rf /build

# A non-root user that owns /data, so a fresh named volume mounted there is writable.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin pheromone \
    && mkdir -p /data \
    && chown pheromone:pheromone /data

ENV PHEROMONE_DATA_DIR=/data
VOLUME ["/data"]
WORKDIR /data
USER pheromone

ENTRYPOINT ["pheromone"]
CMD ["serve"]

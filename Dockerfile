# The control-plane image: every service, the ingest consumer and the gateway; the command picks
# the role (docker/entrypoint.sh). Built from a wheelhouse made on the build host
# (`make wheelhouse`), so the build needs no package index inside the container.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
COPY requirements.lock /tmp/requirements.lock
COPY .wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/steward/venv \
    && /opt/steward/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
       -r /tmp/requirements.lock setuptools==75.8.0
COPY pyproject.toml /opt/steward/app/pyproject.toml
COPY config /opt/steward/app/config
COPY shared /opt/steward/app/shared
COPY services /opt/steward/app/services
COPY gateway /opt/steward/app/gateway
COPY agent /opt/steward/app/agent
COPY cli /opt/steward/app/cli
COPY scripts /opt/steward/app/scripts
COPY docker/entrypoint.sh /opt/steward/app/docker/entrypoint.sh
# The web console's modules as package-lock.json pins them (make install ran npm ci; the gateway serves them).
COPY node_modules /opt/steward/app/node_modules
# The project itself, so its services are registered (entry points) and `steward` is on PATH;
# built with the wheelhouse's setuptools (the Makefile's WHEELHOUSE_SETUPTOOLS), no index being reachable.
RUN /opt/steward/venv/bin/pip install --no-cache-dir --no-index --no-deps --no-build-isolation -e /opt/steward/app

FROM ${BASE_IMAGE}
ENV PATH=/opt/steward/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STEWARD_BIND=0.0.0.0:8080 \
    STEWARD_UPDATER_STORAGE=/var/lib/steward/images
# The backup service pipes pg_dump into restic, and restic dump through pg_restore into psql: both packages from
# the base's own Debian release, the client at the server's major version (docker-compose.yml's and k8s/'s
# PostgreSQL 15; pg_dump refuses a newer server). Before the application layers, so a code change rebuilds none of this.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends restic postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so volumes and Kubernetes securityContext can name them.
RUN groupadd --system --gid 10001 steward \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/steward --create-home --shell /usr/sbin/nologin steward \
    && install -d -o steward -g steward /var/lib/steward/images
COPY --from=build /opt/steward /opt/steward
WORKDIR /opt/steward/app
USER 10001:10001
EXPOSE 8080
# Gateway: GET /healthz; services and the consumer: this process holds its broker connection.
HEALTHCHECK --interval=10s --timeout=15s --start-period=60s --retries=3 CMD ["python", "-m", "scripts.container", "health"]
ENTRYPOINT ["/opt/steward/app/docker/entrypoint.sh"]
CMD ["gateway"]

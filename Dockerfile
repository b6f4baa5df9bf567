# Datanectar: luigid, the workers and the API in one container (`nectar serve`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NECTAR_HOST=0.0.0.0 \
    NECTAR_PORT=5000 \
    NECTAR_SCHEDULER_HOST=127.0.0.1 \
    NECTAR_SCHEDULER_PORT=8082 \
    NECTAR_DATA_DIR=/srv/datanectar/nectar_data \
    NECTAR_LUIGI_CONFIG=/srv/datanectar/configuration/luigi.cfg

RUN useradd --create-home --uid 10001 nectar
WORKDIR /srv/datanectar

COPY pyproject.toml README.md app.py ./
COPY requirements ./requirements
COPY nectar ./nectar
COPY api ./api
RUN pip install -c requirements/constraints.txt '.[postgres]'

COPY configuration ./configuration
COPY chains ./chains
RUN mkdir -p nectar_data local_targets && chown -R nectar:nectar /srv/datanectar
# the service's state: the run registry and the local store's outputs (a new container without them has none)
VOLUME ["/srv/datanectar/nectar_data", "/srv/datanectar/local_targets"]

USER nectar
# luigid (behind its guard) stays inside the container, on 127.0.0.1: only the API is published
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"
CMD ["nectar", "serve"]

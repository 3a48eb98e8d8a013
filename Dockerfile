# Image for the worker, the gateway and the simulator (`pitstop <command>`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pitstop pitstop
COPY streams streams
COPY agents agents
COPY state state
COPY dashboards dashboards
COPY config config
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["pitstop"]

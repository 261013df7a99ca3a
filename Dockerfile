# consensus: the HTTP service (and CLI) in a slim image, run as a non-root user.
# Build stage: llama-cpp-python has no wheel on PyPI and compiles here (about 5 minutes).
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consensus consensus
COPY service service
COPY prompts prompts
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    CONSENSUS_DATABASE_URL=sqlite+aiosqlite:////data/consensus.db
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels consensus \
 && rm -rf /wheels \
 && useradd --create-home --uid 10001 consensus \
 && mkdir /data && chown consensus /data
USER consensus
WORKDIR /home/consensus
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
CMD ["consensus", "serve", "--host", "0.0.0.0", "--port", "8000"]

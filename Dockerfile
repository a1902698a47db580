# relay: webhook relay and event router.
#   docker build -t relay .
#   docker run -p 8000:8000 -v relay-data:/data -v $PWD/routes.yaml:/app/routes.yaml:ro \
#     -e STRIPE_WEBHOOK_SECRET=whsec_... -e NOTTE_API_KEY=... relay
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RELAY_CONFIG=/app/routes.yaml \
    RELAY_DB=/data/relay.db \
    RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN pip install . && useradd --system --uid 10001 --home-dir /app relay && mkdir /data && chown relay /data
COPY routes.yaml ./routes.yaml

USER relay
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
CMD ["relay", "serve"]

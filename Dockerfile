# Tenantry API image: `tenantry serve` on port 8000. Migrations run in the compose `migrate`
# one-shot service before the API starts (serve applies them too; a no-op by then).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/tenantry
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tenantry

# Dependencies first, for the layer cache; then the code.
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
RUN pip install . \
    && mkdir -p /data \
    && chown tenantry:tenantry /data

USER tenantry
ENV TENANTRY_ENV=production \
    TENANTRY_DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"

CMD ["tenantry", "serve", "--host", "0.0.0.0"]

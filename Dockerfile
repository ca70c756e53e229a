# specserve for GPU hosts: CUDA 13 runtime, Node 20, onnxruntime's CUDA 13 provider (the
# combination tested on an H200, see README "GPU hosts").
# Build on a machine with network access:  docker build -t specserve .
# Run:  docker run --gpus all -p 8000:8000 specserve
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

ARG NODE_MAJOR=20
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && curl -fsSL https://deb.nodesource.com/setup_${NODE_MAJOR}.x | bash - \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY scripts/setup-cuda.mjs ./scripts/
# Install without dev tools, then the CUDA provider libraries that onnxruntime-node does not ship
# (from the npm registry; `--cuda 12` would fetch onnxruntime-node's CUDA 12 build from NuGet).
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && node scripts/setup-cuda.mjs --cuda 13 \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so

COPY src ./src
COPY models/specserve-tiny ./models/specserve-tiny

RUN useradd --create-home --uid 10001 specserve && chown -R specserve /app
USER specserve

ENV HOST=0.0.0.0 PORT=8000 NODE_ENV=production
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health || exit 1
# provider "auto" tries CUDA and logs one line saying which provider is active
CMD ["node", "--import", "tsx", "src/cli.ts", "--provider", "auto"]

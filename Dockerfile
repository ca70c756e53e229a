# specserve for GPU hosts: CUDA 12 + cuDNN 9 runtime, Node 20, onnxruntime-node's CUDA provider.
# Build on a machine with network access:  docker build -t specserve .
# Run:  docker run --gpus all -p 8000:8000 specserve
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04

ARG NODE_MAJOR=20
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && curl -fsSL https://deb.nodesource.com/setup_${NODE_MAJOR}.x | bash - \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Install without dev tools, then fetch the CUDA provider libraries that npm does not ship
# (onnxruntime-node downloads them from NuGet for CUDA 12).
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js \
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

# One image for every process of the stack (VAD, ASR and emotion workers, gateway);
# docker-compose.yml and deploy/k8s/ choose the process with the container command.
# Models are NOT in the image: they are mounted read-only at /models, laid out like
# a project directory (see PROJECT_ROOT / MODEL_CACHE_DIR below and docs/deploy.md).
#
#   docker build -t speech-emotion:latest .

# ---- build stage: the virtualenv, built by the same script developers use ----
FROM python:3.11-slim AS build
# A C compiler for the few sdists in the dependency tree; it stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt constraints.txt ./
COPY scripts/install.sh scripts/install.sh
# CPU torch from the PyTorch CPU wheel index: PyPI's default torch is a multi-GB
# CUDA build whose import costs ~280 MB more resident memory in each of the four
# processes, and these containers have no GPU. scripts/install.sh installs torch
# first (from TORCH_INDEX_URL), then torchaudio without its CUDA-linked extension,
# then everything else under constraints.txt, so nothing can pull CUDA torch back in.
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1
RUN bash scripts/install.sh

# ---- runtime stage ----
FROM python:3.11-slim
# Non-root user; /models is created here and owned by it so that a fresh named
# volume mounted there inherits the ownership (the download job writes to it).
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin app \
 && mkdir -p /models \
 && chown app:app /models
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY speech_analysis speech_analysis
COPY services services
COPY gateway gateway
COPY scripts scripts
RUN /app/.venv/bin/python -m compileall -q speech_analysis services gateway scripts
# PROJECT_ROOT holds pretrained_models/emotion-recognition-wav2vec2-IEMOCAP/ and
# silero-vad/; MODEL_CACHE_DIR holds Paraformer trio + SenseVoice
# (services/common/model_paths.py). Both point into the /models mount.
# The HF_* switches keep transformers/huggingface_hub from ever asking the hub at
# run time (the download job turns them off). ModelScope has no such switch: the
# workers hand it local directories, and compose puts the workers on a network
# without egress.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    PROJECT_ROOT=/models \
    MODEL_CACHE_DIR=/models/pretrained_models/model_cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1
USER 10001:10001
EXPOSE 50050 50051 50052 50053
CMD ["python", "-m", "gateway.server"]

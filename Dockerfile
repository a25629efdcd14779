# mfhq and omniid on a GPU machine: the paper's models batched on CUDA, and the trainer.
#   docker build -t mfhq .
#   docker run --gpus all -v /data/models:/models -v /data/videos:/videos -v /data/runs:/runs mfhq \
#       extract --root /videos --out /runs/paper --pipeline paper --device cuda
#   docker run --gpus all -v /data/weights:/weights -v /data/runs:/runs mfhq \
#       omniid-train --manifest /runs/manifests/train.parquet --preset paper --out /runs/omniid
# The weights are not in the image: mfhq's in the /models volume (`mfhq models fetch --to /models`,
# once, with internet), the trainer's CLIP ViT-H/14 and FLUX.1-dev in the /weights volume.
#
# Driver: torch 2.14.1 and onnxruntime-gpu 1.31.1 from PyPI are CUDA 13 builds that bring the
# CUDA and cuDNN libraries as nvidia-* wheels, so the host needs only a driver of the R580
# branch or newer (CUDA 13.0 needs >= 580.65.06 on Linux; R580 runs every CUDA 13.x by minor
# version compatibility) and the NVIDIA Container Toolkit for `--gpus`.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu22.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# Python 3.11, as the pinned wheels (decord, dlib-bin, torch) were checked with.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/mfhq
# The same order as the Makefile: torch first and pinned for every later install. pip itself
# is pinned too; test-only packages (pytest, pytest-xdist and its execnet) stay out of the image.
COPY requirements-torch.txt requirements.txt requirements-nodeps.txt ./
RUN pip install pip==26.3 \
 && pip install -r requirements-torch.txt \
 && sed -E '/^(pytest|pytest-xdist|execnet)==/d' requirements.txt > /tmp/requirements-image.txt \
 && pip install -c requirements-torch.txt -r /tmp/requirements-image.txt \
 && pip install --no-deps -r requirements-nodeps.txt \
 && pip uninstall -y onnxruntime \
 && pip install --no-deps onnxruntime-gpu==1.31.1 \
 && rm /tmp/requirements-image.txt \
 && ! pip show pytest >/dev/null 2>&1 && ! pip show pytest-xdist >/dev/null 2>&1

COPY pyproject.toml README.md ./
COPY mfhq ./mfhq
COPY train ./train
COPY pipelines ./pipelines
# The presets are package data (`--pipeline paper` by name); mfhq/pipelines links to pipelines/.
RUN pip install --no-deps . && mfhq --version && omniid-train --help >/dev/null
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/mfhq-entrypoint

# A non-root user owns the working folder and the volumes' mount points.
RUN useradd --create-home --uid 1000 mfhq \
 && mkdir -p /models /weights /work \
 && chown mfhq:mfhq /models /weights /work
USER mfhq

# mfhq's model weights (--models-dir defaults to this volume).
ENV MFHQ_MODELS_DIR=/models
# The trainer's weights: the open_clip ViT-H/14 LAION-2B file and a diffusers-format FLUX.1-dev
# folder. Override either with -e when your files sit elsewhere in the volume.
ENV OMNIID_CLIP_WEIGHTS=/weights/clip/open_clip_model.safetensors \
    OMNIID_FLUX_PATH=/weights/FLUX.1-dev
VOLUME ["/models", "/weights"]
WORKDIR /work
ENTRYPOINT ["mfhq-entrypoint"]
CMD ["--help"]

# mfhq on a GPU machine: the paper's models batched on CUDA.
#   docker build -t mfhq .
#   docker run --gpus all -v /data/models:/models -v /data/videos:/videos -v /data/runs:/runs mfhq \
#       extract --root /videos --out /runs/paper --pipeline /opt/mfhq/pipelines/paper.yaml --device cuda
# The weights are not in the image: fetch them once into the models volume (needs internet),
#   docker run -v /data/models:/models mfhq models fetch --to /models
# torch 2.14.1 and onnxruntime-gpu 1.31.1 from PyPI are CUDA 13 builds that bring the CUDA and
# cuDNN libraries as nvidia-* wheels, so the base image only needs to match the driver.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu22.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
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
# The same order as the Makefile: torch first and pinned for every later install.
COPY requirements-torch.txt requirements.txt requirements-nodeps.txt ./
RUN pip install --upgrade pip \
 && pip install -r requirements-torch.txt \
 && pip install -c requirements-torch.txt -r requirements.txt \
 && pip install --no-deps -r requirements-nodeps.txt \
 && pip uninstall -y onnxruntime \
 && pip install --no-deps onnxruntime-gpu==1.31.1

COPY pyproject.toml README.md ./
COPY mfhq ./mfhq
COPY train ./train
COPY pipelines ./pipelines
RUN pip install --no-deps .

# Weights live outside the image; --models-dir defaults to this volume.
ENV MFHQ_MODELS_DIR=/models
VOLUME ["/models"]
WORKDIR /work
ENTRYPOINT ["mfhq"]
CMD ["--help"]

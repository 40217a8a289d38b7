# The studio's image, for the cluster launcher (cluster.yaml) and KubeRay (cluster/kuberay/).
#
#   CPU (head, CPU workers):  docker build -t ghcr.io/ai-film-studio/ai-film-studio:0.1.0 .
#   GPU (neural engines):     docker build -t ghcr.io/ai-film-studio/ai-film-studio:0.1.0-gpu \
#                               --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#                               --build-arg EXTRAS=neural .
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311
FROM ${BASE_IMAGE}

ARG EXTRAS=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STUDIO_DATA_DIR=/home/ray/var

WORKDIR /home/ray/studio
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users cluster ./cluster
COPY --chown=ray:users db ./db
COPY --chown=ray:users deployments ./deployments
COPY --chown=ray:users models ./models
COPY --chown=ray:users pipeline ./pipeline
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
    && mkdir -p /home/ray/var

EXPOSE 8000 8265 8080
CMD ["studio", "serve"]

# One image for every studio server: `studio web`, `studio worker` and the
# MLflow tracking server (docker-compose.yml runs them side by side).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STUDIO_HOME=/data

# The CPU build of torch; a CUDA image for GPU workers overrides this URL.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"

WORKDIR /app
COPY . .
# Editable, because the settings find templates/, static/ and locale/ next to the packages.
RUN pip install -e . && mkdir -p /data

EXPOSE 8000
CMD ["studio", "web", "--host", "0.0.0.0", "--port", "8000"]

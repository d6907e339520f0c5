# paxline: one image for coordinators and workers (the same `paxline` commands as the local
# stack). Job code ships in the image: examples/ is included; add your own jobs the same way.
# Dependencies come from uv.lock (the versions CI proved), installed by the pinned uv.
# PYTHON_IMAGE: any Python 3.11 image with pip; hosts without a registry build
# paxline-python:3.11 from Debian packages (scripts/images, which passes it here).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/paxline UV_NO_CACHE=1 \
    PATH=/opt/paxline/bin:$PATH
RUN useradd --create-home --uid 10001 paxline
WORKDIR /app
COPY scripts/uv.requirements.txt /tmp/uv.requirements.txt
RUN pip install --require-hashes -r /tmp/uv.requirements.txt
# Dependencies first (a layer that changes only with the lock), then the project itself.
# (README.md, the package's long description, comes with the project: editing it does not
# reinstall the dependencies.)
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project --no-editable
COPY README.md ./
COPY coordinator ./coordinator
COPY pipeline ./pipeline
COPY paxline ./paxline
RUN uv sync --locked --no-dev --no-editable && mkdir -p /data && chown paxline:paxline /data
COPY examples ./examples
USER paxline
EXPOSE 8701 9701 9400
ENTRYPOINT ["paxline"]
CMD ["--help"]

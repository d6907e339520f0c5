# paxline: one image for coordinators and workers (the same `paxline` commands as the local
# stack). Job code ships in the image: examples/ is included; add your own jobs the same way.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 paxline
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coordinator ./coordinator
COPY pipeline ./pipeline
RUN pip install . && mkdir -p /data && chown paxline:paxline /data
COPY examples ./examples
USER paxline
EXPOSE 8701 9701 9400
ENTRYPOINT ["paxline"]
CMD ["--help"]

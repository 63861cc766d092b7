# llm-exporter container image.
#   docker build -t llm-exporter:0.1.0 .     # or: make image (the tag is the package version)
#   app | docker run -i --rm -p 10060:10060 llm-exporter:0.1.0          # read stdin
#   docker run --rm -v /var/log/llm:/logs:ro -p 10060:10060 llm-exporter:0.1.0 --file '/logs/*.log'
# Stage 1 builds the project's wheel and the wheels of its dependencies; stage 2 installs them
# from there alone (no index) into a virtual environment and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY llm_exporter ./llm_exporter
RUN python3 -m venv /build \
    && /build/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG UID=10060
# the git revision, shown as llm_exporter_build_info{revision}
ARG LLM_EXPORTER_REVISION=""
# a fixed uid and gid, so that Kubernetes' runAsUser, volume permissions and fsGroup can name them
RUN groupadd --gid "${UID}" llm-exporter \
    && useradd --no-log-init --uid "${UID}" --gid "${UID}" --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin llm-exporter
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/llm-exporter \
    && /opt/llm-exporter/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links /wheels llm-exporter \
    && /opt/llm-exporter/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/llm-exporter/bin/llm-exporter --version
ENV PATH=/opt/llm-exporter/bin:$PATH \
    LLM_EXPORTER_REVISION=${LLM_EXPORTER_REVISION} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER ${UID}:${UID}
# the root filesystem may be read-only: nothing is written outside --state-dir (a volume)
EXPOSE 10060
# /healthz on the port LLM_EXPORTER_LISTEN names (10060 by default), plain HTTP or TLS, with or
# without basic auth or client certificates in --web-config (see `llm-exporter healthcheck --help`)
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["llm-exporter", "healthcheck"]
ENTRYPOINT ["llm-exporter"]

# Newsbot's container image.
#
# The builder stage installs the project into a virtualenv; the runtime stage starts
# again from the same slim Python base and copies only that virtualenv, so no compiler,
# pip cache, source tree or test ends up in the image. It builds with the classic
# builder and with BuildKit alike, which is why there is no syntax line and no
# RUN --mount.
#
#   docker build -t newsbot:local .
#   docker run --rm --read-only --tmpfs /tmp -e TELEGRAM_TOKEN=... newsbot:local

# A pinned minor: a new Python minor is a change to review, not a surprise on rebuild.
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# The venv has the same path in both stages: its scripts' shebangs point into it.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies and the build backend first, read from pyproject.toml alone, so that a
# change to the code reuses this layer and a rebuild only installs the project itself,
# without downloading anything.
COPY pyproject.toml ./
RUN python -c "import tomllib; \
meta = tomllib.load(open('pyproject.toml', 'rb')); \
print(*meta['build-system']['requires'], *meta['project']['dependencies'], sep=chr(10))" \
        > /tmp/requirements.txt \
 && pip install --requirement /tmp/requirements.txt

# README.md stays out (setuptools only warns): editing the docs rebuilds nothing.
COPY newsbot ./newsbot
# The installer and the build backend are not needed at run time: fewer files, fewer
# CVEs to patch.
RUN pip install --no-deps --no-build-isolation . \
 && pip uninstall --yes pip setuptools


FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric user, so that Kubernetes' runAsNonRoot can verify it and files on
# volumes get a predictable owner; its home is /tmp, the only writable place.
RUN groupadd --system --gid 10001 newsbot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin newsbot

COPY --from=builder /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time; the
# bytecode compiled at install time is already in the venv.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

USER 10001:10001

# The health server (NEWSBOT_HTTP_PORT): /healthz, /readyz and /metrics.
EXPOSE 8080

# Standard library only, since slim images have no curl. The proxy handler is emptied
# so that an HTTP(S)_PROXY meant for the bot's own traffic cannot divert this probe;
# with the health server turned off (port 0) there is nothing to ask.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; port = os.environ.get('NEWSBOT_HTTP_PORT') or '8080'; port == '0' or r.build_opener(r.ProxyHandler({})).open(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM (Docker's and Kubernetes' default) makes the bot drain and exit 0.
STOPSIGNAL SIGTERM

# Last, so that a new revision does not invalidate the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/newsbot/newsbot
LABEL org.opencontainers.image.title="newsbot" \
      org.opencontainers.image.description="A Telegram bot that brings you the news you choose" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"

ENTRYPOINT ["newsbot"]
CMD ["run"]

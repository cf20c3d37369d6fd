# The fedcredit image: coordinator, member node and CLI in one (see docker-compose.yml).
#   docker build -t fedcredit:dev .
#   docker run --rm fedcredit:dev --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# All dependencies ship binary wheels for CPython 3.11 (gmpy2, grpcio, pyarrow, cryptography…),
# so no compiler is needed. Java (Spark feature pipeline) is not needed yet.
WORKDIR /tmp/fedcredit-src
COPY . .
RUN pip install . \
 && cd / && rm -rf /tmp/fedcredit-src

# Unprivileged runtime user. Every volume mount point of docker-compose.yml exists in the
# image, owned by that user (Docker gives a fresh named volume the owner of the directory it is
# first mounted on; one it had to create would be root's and unwritable here). Every service
# runs as this one user: services are kept apart by which volumes each mounts, not by uid.
RUN useradd --system --uid 10001 --home-dir /var/lib/fedcredit --shell /usr/sbin/nologin fedcredit \
 && mkdir -p /var/lib/fedcredit/coordinator /var/lib/fedcredit/alliance \
             /var/lib/fedcredit/demo \
             /var/lib/fedcredit/node/data /var/lib/fedcredit/node/inputs \
             /var/lib/fedcredit/members/bank /var/lib/fedcredit/members/finco \
             /var/lib/fedcredit/members/shop \
 && chown -R fedcredit:fedcredit /var/lib/fedcredit
USER fedcredit
WORKDIR /var/lib/fedcredit

ENTRYPOINT ["fedcredit"]
CMD ["--help"]

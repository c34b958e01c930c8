# autotune image for the in-cluster Job/CronJob (k8s/). Build: docker build -t autotune:0.1.0 .
# Installed editable so the shipped profiles/ stay next to the package (profiles may `extends:` them).
FROM python:3.11-slim
WORKDIR /opt/autotune
COPY pyproject.toml README.md CHANGELOG.md ./
COPY autotune ./autotune
COPY profiles ./profiles
RUN pip install --no-cache-dir -e . \
    && useradd --uid 1000 --create-home autotune
ENV AUTOTUNE_PROFILES_DIR=/opt/autotune/profiles
USER 1000
ENTRYPOINT ["autotune"]

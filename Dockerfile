# autotune image for the in-cluster Job/CronJob and the workers' Indexed Job (k8s/; the [postgres] extra
# drives their shared study). Build: docker build -t autotune:0.1.0 .
# A regular (non-editable) install: the shipped profiles/ go into the package as autotune/profiles/,
# so named profiles and `extends:` of them work without the source tree. Mount your own profiles
# and point AUTOTUNE_PROFILES_DIR at them to have them found first.
FROM python:3.11-slim
COPY pyproject.toml README.md CHANGELOG.md /tmp/src/
COPY autotune /tmp/src/autotune
COPY profiles /tmp/src/profiles
RUN pip install --no-cache-dir "/tmp/src[postgres]" \
    && rm -rf /tmp/src \
    && useradd --uid 1000 --create-home autotune
WORKDIR /home/autotune
USER 1000
ENTRYPOINT ["autotune"]

# The MinIO image `make e2e` builds (scripts/e2e.sh) in place of
# minio/minio, which the test machines cannot pull: the static server binary
# `make tools/minio` builds from the Go module proxy (the version DESIGN.md
# pins), on an empty base, as a non-root user. Its entrypoint takes the
# arguments compose.yaml gives the upstream image (`server /data ...`).
#
# Build context: a directory holding minio, passwd, and the empty
# directories data, home and tmp (the script prepares it).
FROM scratch
COPY passwd /etc/passwd
COPY tmp /tmp
COPY --chown=65532:65532 home /home/nonroot
COPY --chown=65532:65532 data /data
COPY minio /minio
USER 65532:65532
ENV HOME=/home/nonroot
VOLUME /data
EXPOSE 9000 9001
ENTRYPOINT ["/minio"]

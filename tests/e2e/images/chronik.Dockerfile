# The chronik image `make e2e` builds (scripts/e2e.sh): the runtime stage of
# the repository's Dockerfile, from a static binary compiled on the host,
# because the test machines reach no image registry and so cannot pull the
# golang base image. Keep the two runtime layouts alike.
#
# Build context: a directory holding chronik, passwd, and the empty
# directories data and tmp (the script prepares it).
FROM scratch
COPY passwd /etc/passwd
COPY tmp /tmp
COPY --chown=65532:65532 data /var/lib/chronik
COPY chronik /chronik
USER 65532:65532
ENV CHRONIK_DATA_DIR=/var/lib/chronik
VOLUME /var/lib/chronik
EXPOSE 9092 9093 6092
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
	CMD ["/chronik", "health", "--live"]
ENTRYPOINT ["/chronik"]
CMD ["start"]

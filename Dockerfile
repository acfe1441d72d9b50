# nanosync server image. Build: docker build -t nanosync .
# The build stage runs scripts/docker-build.sh, which CI also runs without Docker.
FROM node:24-slim AS build
WORKDIR /src
COPY . .
RUN bash scripts/docker-build.sh /out

FROM node:24-slim
ENV NODE_ENV=production \
    NANOSYNC_STATE=/var/lib/nanosync/state.db
COPY --from=build /out/app /opt/nanosync
COPY scripts/healthcheck.mjs /opt/nanosync/healthcheck.mjs
# State (SQLite database, admin token, secret key) lives on a volume owned by the
# unprivileged `node` user (uid 1000) the server runs as.
RUN mkdir -p /var/lib/nanosync && chown node:node /var/lib/nanosync
USER node
VOLUME /var/lib/nanosync
EXPOSE 7654
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/opt/nanosync/healthcheck.mjs"]
ENTRYPOINT ["/opt/nanosync/node_modules/.bin/nanosync"]
# 0.0.0.0 inside the container so a published port reaches it; the API needs the token.
CMD ["serve", "--listen", "0.0.0.0:7654"]

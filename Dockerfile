# syntax=docker/dockerfile:1
# Multi-stage, non-root image for the scribe-bridge service and CLI.
# Node 24 runs the TypeScript sources directly (type stripping), so there is no compile stage:
# the build stage only installs production dependencies.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# V8's young generation capped at 2 × 8 MB (Node 24's default grows it to 2 × 32 MB on this kind of host):
# measured with `npm run bench -- service postgres`, the service starts ~60–100 MB smaller and peaks ~30–70 MB
# lower at the same CPU per note. Capping the old generation as well costs 30–50% throughput (README, Performance).
ENV NODE_OPTIONS=--max-semi-space-size=8
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY web ./web
COPY mappings ./mappings
COPY profiles ./profiles
# The compact base R4 definitions (src/validate/compact-r4.ts), made now: the image's user cannot write to /app.
RUN node /app/src/validate/compact-r4.ts
RUN mkdir -p /var/lib/scribe-bridge && chown node:node /var/lib/scribe-bridge
USER node
WORKDIR /var/lib/scribe-bridge
EXPOSE 8080
# The service reads its configuration from a mounted file (http.host must be 0.0.0.0 in a container);
# secrets come from the environment (SCRIBE_BRIDGE_TOKEN_*, the variables the config names, AWS's chain).
ENV SCRIBE_BRIDGE_CONFIG=/etc/scribe-bridge/config.yaml
HEALTHCHECK --interval=30s --timeout=5s CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/scribe-bridge.js"]
CMD ["serve"]

# The hongbao server image: one process per container, started as `node --import tsx src/main.ts`
# (tsx is a runtime dependency, so the dev dependencies are left out). docker-compose.yml runs
# several of these as engine nodes and one as the ledger; README "Running several nodes".
FROM node:20-slim

WORKDIR /app
# Dependencies first: the layer is reused while package*.json do not change.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY drizzle ./drizzle
COPY src ./src
COPY scripts/token.ts ./scripts/token.ts

# In a container the API listens on every interface; ADVERTISE_URL says how the others reach it.
ENV HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/data
EXPOSE 3000
# The embedded default's folder (unused when DATABASE_URL is set) must be writable by the user.
RUN mkdir -p /app/data && chown node:node /app/data
USER node

# node itself is PID 1: it gets SIGTERM from `docker stop` and stops cleanly (src/main.ts).
CMD ["node", "--import", "tsx", "src/main.ts"]

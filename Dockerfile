# One image for every role of the shop: `shop run` (embedded), `shop serve ROLE`, `shop prepare`.
# docker-compose.yml runs the distributed shop from it.

# The console's chart library, from npm as package-lock.json pins it (only its files go on).
FROM node:20-slim AS console
WORKDIR /console
COPY src/shop/console/package.json src/shop/console/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 SHOP_DATA_DIR=/data
WORKDIR /app

# The dependencies first (pinned in pyproject.toml), so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=console /console/node_modules ./src/shop/console/node_modules
RUN pip install . && useradd --system --uid 10001 shop && mkdir -p /data && chown shop /data

USER shop
VOLUME /data
EXPOSE 8000 50051
ENTRYPOINT ["shop"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000", "--demo"]

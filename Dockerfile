FROM python:3.11.10-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY contract contract
COPY datasets datasets
COPY replay replay
COPY stream stream
COPY verify verify
COPY common common
COPY fsp fsp
COPY bench bench
COPY serving serving
RUN pip install --no-cache-dir -c requirements.lock .
ENV PYTHONUNBUFFERED=1
CMD ["fsp", "worker"]

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY vqa ./vqa
COPY workflows ./workflows
COPY activities ./activities
COPY detectors ./detectors
COPY cli ./cli
COPY worker.py starter.py ./
RUN pip install --no-cache-dir .
CMD ["python", "worker.py"]

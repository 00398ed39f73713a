# CPU image: `docker build -t pc-lightning . && docker run --rm pc-lightning`
# runs the main job (expert data generation, PC training, held-out evaluation).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pc_lightning ./pc_lightning
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e .
COPY conf ./conf
COPY data/README.md ./data/README.md
CMD ["pc-lightning", "fit", "--config", "conf/maze.yaml"]

# One image for the API, the workers and the demo-only simulator; compose picks the command.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A venv copied whole into the runtime stage: no build tools or caches ship with the app.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies get their own layer, keyed on pyproject.toml alone, so a code change rebuilds
# in seconds instead of reinstalling FFmpeg-sized wheels.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# .dockerignore keeps local state, secrets and tests out of this copy.
COPY . .
# The import check runs outside /src, so it proves the installed copy is complete.
RUN pip install --no-deps . \
    && cd / && python -c "import api.__main__, worker, simulator.__main__, settings, devstack.healthcheck"


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed unprivileged uid: the app cannot modify its own image or read other users' files.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

COPY --from=build /opt/venv /opt/venv

USER app
WORKDIR /home/app
EXPOSE 8000

# Plain HTTP inside the compose network: TLS ends at the reverse proxy in front of the API.
CMD ["python", "-m", "api", "--host", "0.0.0.0", "--port", "8000"]

# notifier: the daemon image used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code finds its Alembic scripts at <repo>/migrations next to the notifier package
# (notifier/store/migrate.py MIGRATIONS_DIR), so the package is installed in place (editable)
# from /app rather than copied into site-packages.
COPY README.md ./
COPY notifier ./notifier
COPY migrations ./migrations
RUN pip install --no-deps -e . \
    && python -m compileall -q notifier migrations \
    && test -f "$(python -c 'from notifier.store.migrate import MIGRATIONS_DIR; print(MIGRATIONS_DIR)')/env.py"

RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin notifier
USER notifier

ENV NOTIFIER_CONFIG=/etc/notifier/notifier.toml
EXPOSE 8080
CMD ["notifier", "run"]

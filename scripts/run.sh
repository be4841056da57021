#!/usr/bin/env bash
# The run command: installs, migrates, sets up the roles, the first administrator and the
# samples (manage.py init_assistant), then runs the web server (HTTP + WebSockets on
# 127.0.0.1:8000), Celery workers and beat, and a local Chroma server. Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv requirements.txt

if [ ! -f .env ]; then
    echo "==> writing .env from .env.example with freshly generated keys"
    .venv/bin/python scripts/make_env.py .env.example .env
fi
set -a
# shellcheck disable=SC1091
source .env
set +a
export DJANGO_SETTINGS_MODULE=assistant_site.settings.base
WEB_PORT="${WEB_PORT:-8000}"
# The local Chroma server listens where a loopback CHROMA_URL points; CHROMA_PORT, when set,
# moves both (the processes would otherwise look for Chroma where it is not).
LOCAL_CHROMA='^http://(127\.0\.0\.1|localhost):([0-9]+)/?$'
if [ -n "${CHROMA_PORT:-}" ] && [[ "${CHROMA_URL:-}" =~ $LOCAL_CHROMA ]]; then
    export CHROMA_URL="http://127.0.0.1:$CHROMA_PORT"
elif [[ "${CHROMA_URL:-}" =~ $LOCAL_CHROMA ]]; then
    CHROMA_PORT="${BASH_REMATCH[2]}"
fi
CHROMA_PORT="${CHROMA_PORT:-8001}"
# Without Redis the channel layer lives in one process's memory: one web process then.
WEB_WORKERS="${WEB_WORKERS:-$([ -n "${REDIS_URL:-}" ] && echo 2 || echo 1)}"
# Each thread executes one run at a time, so this also caps model calls in flight per
# process (docs/llm.md#concurrency-per-endpoint).
RUNS_WORKER_THREADS="${RUNS_WORKER_THREADS:-64}"
# One runs worker process per core (at most 4): a process runs Python on one core at a time,
# and short runs are CPU-bound (bench/end_to_end.py: 2 processes answered 2.3 times the
# messages of one on 2 cores).
RUNS_WORKERS="${RUNS_WORKERS:-$(cores="$(nproc)"; echo $((cores > 4 ? 4 : cores)))}"

mkdir -p var
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

if [ -n "${DATABASE_URL:-}" ]; then
    .venv/bin/python scripts/create_database.py "$DATABASE_URL"
fi
build_frontend

pids=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "==> stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# start NAME COMMAND...: run in the background with each output line prefixed by NAME.
start() {
    local name="$1"; shift
    "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
    pids+=("$!")
}

if [ -n "${CHROMA_URL:-}" ]; then
    start chroma .venv/bin/chroma run --path var/chroma --host 127.0.0.1 --port "$CHROMA_PORT"
    # Up before the set-up below, which indexes the sample documents into it (it says so and
    # leaves them for the next start if Chroma is not up within 60 s).
    for _ in $(seq 120); do
        (: <"/dev/tcp/127.0.0.1/$CHROMA_PORT") 2>/dev/null && break
        sleep 0.5
    done
fi
# Migrations, static files, then init_assistant: roles, the first administrator (its password
# printed once), the samples. Its lines go on to our output (fd 3) as they come; the "web chat
# page" line also gives the banner below the demo chat's address.
exec 3>&1
CHAT_PATH="$(PYTHONUNBUFFERED=1 .venv/bin/python manage.py prepare_site | {
    found=""
    while IFS= read -r line; do
        printf '%s\n' "$line" >&3
        case "$line" in *"web chat page:"*/chat/*) found="/chat/${line##*/chat/}" ;; esac
    done
    printf '%s' "$found"
})"
exec 3>&-

if [ -n "${REDIS_URL:-}" ]; then
    # Runs are I/O-bound (model calls): threads keep many in flight in one process.
    for n in $(seq "$RUNS_WORKERS"); do
        start "runs$n" .venv/bin/celery -A assistant_site worker -Q runs -P threads \
            -c "$RUNS_WORKER_THREADS" \
            -n "runs$n@%h" --loglevel INFO
    done
    # Ingestion is CPU-bound: one prefork process, not competing with the web server.
    start ingest .venv/bin/celery -A assistant_site worker -Q ingest -c 1 \
        -n "ingest@%h" --loglevel INFO
    start beat .venv/bin/celery -A assistant_site beat --loglevel INFO
    # Telegram connectors in polling mode (idle while there are none).
    start poll .venv/bin/python manage.py connectors_poll
else
    echo "WARNING: REDIS_URL is not set: no Celery worker or beat; tasks run in the web process" >&2
fi
start web .venv/bin/uvicorn assistant_site.asgi:application --host 127.0.0.1 \
    --port "$WEB_PORT" --workers "$WEB_WORKERS" --no-access-log --lifespan off

cat <<MSG

  Assistant Studio is starting on http://127.0.0.1:$WEB_PORT/
    studio       http://127.0.0.1:$WEB_PORT/studio/
${CHAT_PATH:+    web chat     http://127.0.0.1:$WEB_PORT$CHAT_PATH
}    admin        http://127.0.0.1:$WEB_PORT/admin/
    API docs     http://127.0.0.1:$WEB_PORT/api/docs/
    readiness    http://127.0.0.1:$WEB_PORT/readyz
    metrics      http://127.0.0.1:$WEB_PORT/metrics
  Press Ctrl-C to stop everything.

MSG
# Stop everything as soon as any one process exits.
wait -n
echo "==> a process exited; stopping the others" >&2
exit 1

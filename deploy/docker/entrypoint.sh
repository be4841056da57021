#!/usr/bin/env bash
# The image's entry point: the first argument names the process this container runs.
#
#   web            gunicorn (WSGI): HTTP, everything but /ws/, on $PORT (8000)
#   ws             uvicorn (ASGI): the WebSockets under /ws/, on $PORT (8000)
#   worker-runs    Celery worker for the `runs` queue (threads, $RUNS_WORKER_THREADS)
#   worker-ingest  Celery worker for the `ingest` queue (prefork, $INGEST_WORKER_CONCURRENCY)
#   beat           Celery beat (exactly one per installation)
#   listener       manage.py connectors_poll (exactly one per installation)
#   chroma         the Chroma server on $CHROMA_PORT (8000), data in $CHROMA_PATH
#   migrate        manage.py migrate, then exit
#   init [--collectstatic]
#                  migrate, (copy the static files into $VAR_DIR/static,) then init_assistant:
#                  the roles and the first administrator ($ADMIN_USERNAME, $ADMIN_EMAIL; its
#                  password printed once), the samples only with INIT_SAMPLES=true; then exit
#   manage ARGS    manage.py ARGS
#   healthcheck [CHECK]
#                  deploy/docker/healthcheck.py: the check of this container's process
#   anything else  run as given (e.g. bash)
#
# Every process reads the settings from the environment (README, Settings). A proxy in front
# sends /ws/ to a `ws` container and everything else to a `web` one (deploy/nginx/, the
# Kubernetes Ingress): gunicorn serves several times uvicorn's HTTP requests at less CPU per
# request (docs/architecture.md, "HTTP: WSGI or ASGI").
set -euo pipefail
cd "${APP_DIR:-/app}"

# Each web or worker process writes its Prometheus samples into this folder and /metrics
# merges them; files left by an earlier run of this container would be merged too.
prepare_metrics_dir() {
    if [[ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]]; then
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
    fi
}

# CPUs this container may use: its CPU quota (cgroup v2 cpu.max: docker --cpus, a Kubernetes
# limit) rounded up, else the CPUs it may run on.
usable_cpus() {
    local quota period
    if read -r quota period 2>/dev/null </sys/fs/cgroup/cpu.max && [[ $quota =~ ^[0-9]+$ ]]; then
        echo $(((quota + period - 1) / period))
    else
        nproc
    fi
}

role="${1:-web}"
[[ $# -gt 0 ]] && shift

case "$role" in
    web)
        prepare_metrics_dir
        # Sync workers, 2 per usable CPU by default. --timeout: a worker busy longer is
        # killed; the slowest requests are node test runs (60 s) and webhooks waiting for
        # their run (?wait=, at most 30 s). On stop, requests in progress get
        # WEB_GRACEFUL_TIMEOUT. No access log: the proxy logs requests, the application its
        # own lines. The port is reachable only from the container network, where the
        # proxy's address is not known in advance: X-Forwarded-Proto is trusted from any
        # peer unless FORWARDED_ALLOW_IPS narrows it. The config file removes an exited
        # worker's live metrics (deploy/gunicorn.conf.py).
        exec gunicorn assistant_site.wsgi:application \
            --config "${APP_DIR:-/app}/deploy/gunicorn.conf.py" \
            --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_WORKERS:-$((2 * $(usable_cpus)))}" \
            --timeout "${WEB_TIMEOUT:-90}" --graceful-timeout "${WEB_GRACEFUL_TIMEOUT:-30}" \
            --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}" --no-control-socket "$@"
        ;;
    ws)
        prepare_metrics_dir
        # --lifespan off: Django's ASGI handler has no lifespan support. The graceful timeout
        # bounds how long open WebSockets delay a stop (they reconnect to another replica).
        # uvicorn answers HTTP too (/healthz, /readyz for the probes).
        exec uvicorn assistant_site.asgi:application --host 0.0.0.0 --port "${PORT:-8000}" \
            --workers "${WS_WORKERS:-2}" --lifespan off --no-access-log \
            --timeout-graceful-shutdown "${WS_GRACEFUL_TIMEOUT:-20}" "$@"
        ;;
    worker-runs)
        prepare_metrics_dir
        # Runs are I/O-bound (model calls): threads keep many in flight in one process, and
        # also cap the model calls this process makes at once (docs/llm.md).
        exec celery -A assistant_site worker -Q runs -P threads \
            -c "${RUNS_WORKER_THREADS:-64}" -n "runs@%h" --loglevel INFO "$@"
        ;;
    worker-ingest)
        prepare_metrics_dir
        # Parsing and embedding are CPU-bound: few processes, one per core at most.
        exec celery -A assistant_site worker -Q ingest -c "${INGEST_WORKER_CONCURRENCY:-1}" \
            -n "ingest@%h" --loglevel INFO "$@"
        ;;
    beat)
        prepare_metrics_dir
        # The schedule lives in the database (django-celery-beat): no file to keep.
        exec celery -A assistant_site beat --loglevel INFO "$@"
        ;;
    listener)
        prepare_metrics_dir
        exec python manage.py connectors_poll "$@"
        ;;
    chroma)
        exec chroma run --path "${CHROMA_PATH:-${VAR_DIR:-/var/lib/assistant-studio}/chroma}" \
            --host 0.0.0.0 --port "${CHROMA_PORT:-8000}" "$@"
        ;;
    migrate)
        exec python manage.py migrate --no-input "$@"
        ;;
    init)
        collect=false
        for arg in "$@"; do
            case "$arg" in
                --collectstatic) collect=true ;;
                *) echo "entrypoint: init takes only --collectstatic, not $arg" >&2; exit 64 ;;
            esac
        done
        python manage.py migrate --no-input
        if [[ $collect == true ]]; then
            # Into the volume nginx serves /static/ from: the files of this image's version
            # (older hashed names stay, for pages still open in browsers).
            python manage.py collectstatic --no-input --verbosity 0
        fi
        extra=()
        if [[ -n "${ADMIN_EMAIL:-}" ]]; then
            extra+=(--email "$ADMIN_EMAIL")
        fi
        # The samples include a web chat that answers anyone (docs/operations.md): a server
        # gets them only when asked for.
        if [[ "${INIT_SAMPLES:-false}" != true ]]; then
            extra+=(--skip-samples)
        fi
        exec python manage.py init_assistant --no-input \
            --username "${ADMIN_USERNAME:-admin}" "${extra[@]}"
        ;;
    manage)
        exec python manage.py "$@"
        ;;
    healthcheck)
        exec python "${APP_DIR:-/app}/deploy/docker/healthcheck.py" "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac

# Shared by scripts/run.sh and scripts/test.sh.

# ensure_venv REQUIREMENTS_FILE: create .venv and install the pinned requirements, skipping
# the install when the files have not changed since the last successful one.
ensure_venv() {
    local requirements="$1"
    local stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-${requirements%.txt}"
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating the virtual environment in .venv"
        python3 -m venv .venv
    fi
    if [ ! -f "$stamp" ]; then
        echo "==> installing pinned dependencies from $requirements (about a minute the first time)"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
}

# compile_translations: build the .mo catalogues (needs GNU gettext's msgfmt).
compile_translations() {
    if command -v msgfmt >/dev/null 2>&1; then
        .venv/bin/python manage.py compilemessages --ignore=.venv --verbosity 0
    else
        echo "WARNING: msgfmt not found (apt-get install gettext): the UI stays in English" >&2
    fi
}

# build_frontend: install the locked npm packages (again only when package-lock.json
# changed) and build the editor's and chat's bundle into frontend/dist.
build_frontend() {
    if ! command -v npm >/dev/null 2>&1; then
        echo "ERROR: npm (Node.js 20 or newer) is needed to build the editor: apt-get install nodejs npm" >&2
        return 1
    fi
    local stamp="frontend/node_modules/.installed-$(sha256sum frontend/package-lock.json | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "==> installing the editor's locked npm packages (frontend/package-lock.json)"
        (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
        touch "$stamp"
    fi
    echo "==> building the editor and chat bundle (frontend/dist)"
    (cd frontend && npm run --silent build -- --logLevel warn)
}

# ensure_test_packages: Debian packages the tests drive: chromium for the browser tests
# (Playwright's own browser download does not work offline) and a CJK font, or Chinese
# renders as empty boxes; nginx (`nginx -t` and a live check of deploy/nginx) and promtool
# (package prometheus: the alert rules and their unit tests); shellcheck for the scripts.
ensure_test_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]} for the tests"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

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

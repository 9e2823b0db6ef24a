# Sourced by scripts/dev and scripts/test: create .venv with python3 if it is missing, and (re)install
# closeloop with its test extras whenever pyproject.toml changed since the last install.
if [ ! -x .venv/bin/python ]; then
  echo "closeloop: creating .venv" >&2
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.closeloop-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "closeloop: installing closeloop[test] into .venv (first run takes a minute)" >&2
  # playwright (tests/browser) drives Debian's chromium: never let it fetch a browser of its own
  PIP_NO_INPUT=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" >"$stamp"
fi

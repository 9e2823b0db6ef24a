# Sourced by scripts/test and .ci/run: Debian's chromium for tests/browser (Playwright drives /usr/bin/chromium;
# its own browser download, `playwright install`, is never used). Best effort, as .ci/run installs nginx: without
# it the browser tests skip and say why, except in CI (CI=true), where they fail.
if ! declare -F as_root >/dev/null; then
  as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
  }
fi

ensure_chromium() {
  [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 && return 0
  # tried once per run: .ci/run tries before it runs scripts/test
  [ "${CLOSELOOP_CHROMIUM_TRIED:-0}" = "1" ] && return 0
  export CLOSELOOP_CHROMIUM_TRIED=1
  echo "closeloop: installing chromium (for tests/browser)" >&2
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      </dev/null; } || echo "closeloop: could not install chromium; tests/browser will skip (and fail in CI)" >&2
}

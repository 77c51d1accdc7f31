#!/usr/bin/env bash
# Create .venv and install the project with its dev extras; fast no-op when up to date.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { log "Python >= 3.11 is required (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1; }
# Debian's docker-compose 1.29 validates docker-compose.yml in the tests (no engine needed).
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's docker-compose (used to validate docker-compose.yml)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && apt-get install -y -qq docker-compose >/dev/null \
    || log "could not install docker-compose; the compose validation test will fail"
fi
VENV="$ROOT/.venv"
# Chinese glyphs for the report's charts (hangwatch/report/fonts.py): Noto Sans CJK from Debian.
if [ ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's fonts-noto-cjk (Chinese text in the report's charts)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null \
    || log "could not install fonts-noto-cjk; set HANGWATCH_FONT_FILE to a CJK font for the report"
fi
STAMP="$VENV/.hangwatch-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
# The stream core runs compiled (mypyc, hangwatch/native.py) unless HANGWATCH_NATIVE=0; without a
# C compiler it stays pure Python, which gives the same results more slowly.
native() {
  if [ "${HANGWATCH_NATIVE:-1}" = 0 ]; then return 0; fi
  "$VENV/bin/hangwatch" native build --if-needed \
    || log "could not compile the stream core (see above); it runs as pure Python (HANGWATCH_NATIVE=0 skips this)"
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/hangwatch" ]; then native; exit 0; fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
log "installing hangwatch and its dependencies into $VENV (chdb is ~550 MB; first run takes a few minutes)"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e "$ROOT[dev]"
echo "$want" > "$STAMP"
native

#!/bin/sh
# Two entry points in one image: `docker run IMAGE omniid-train ...` (or omniid-eval, or
# any installed command) runs that command; anything else goes to `mfhq`, so
# `docker run IMAGE extract ...` keeps working.
set -e
case "${1:-}" in
    mfhq|omniid-train|omniid-eval|omniid-generate|omniid-bench-data|python|sh|bash) exec "$@" ;;
    *) exec mfhq "$@" ;;
esac

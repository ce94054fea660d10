#!/bin/sh
# Entrypoint of the ViLMS trainer image: the training commands, run in the mounted project.
#   vilms-trainer train ADAPTER [--resume]     vilms-trainer train --all [-j N]
#   vilms-trainer export RUN_ID [--gguf]       vilms-trainer data check data/x.jsonl
# -f defaults to $VILMS_PROJECT/vilms.yaml so relative paths resolve inside the mount.
set -eu
if [ -d "${VILMS_PROJECT:-/workspace}" ]; then cd "${VILMS_PROJECT:-/workspace}"; fi
case "${1:-}" in
  train|export|approve)
    case " $* " in
      *" -f "*|*" --file "*|*" --file="*) ;;
      *) set -- "$@" -f "${VILMS_PROJECT:-/workspace}/vilms.yaml" ;;
    esac ;;
esac
exec python -m vilms "$@"

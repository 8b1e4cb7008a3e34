#!/usr/bin/env bash
# The README's start command: install, make sure models are present, start the whole stack.
#
#   bash scripts/start.sh                 # real models (downloads them if missing and online)
#   bash scripts/start.sh --demo-models   # tiny generated random-weight models: see the flow
#                                         # without gigabytes of downloads (results are meaningless)
#   bash scripts/start.sh --with speaker  # also the speaker worker (speaker labels; any launcher
#                                         # arguments follow, after --demo-models if given)
#
# Environment: see the README's settings table (ASR_MODE, EMOTION_LAZY_LOAD, ports, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=.venv/bin/python

if [ "${1:-}" = "--demo-models" ]; then
  shift
  demo=.cache/demo-root
  if [ ! -f "$demo/pretrained_models/.complete" ]; then
    echo "== building tiny demo models (random weights) into $demo"
    $PY scripts/make_test_models.py --size tiny --out "$demo/pretrained_models"
    touch "$demo/pretrained_models/.complete"
  fi
  speaker_dir="$demo/pretrained_models/model_cache/models/iic/speech_campplus_sv_zh-cn_16k-common"
  if [ ! -f "$speaker_dir/campplus_cn_common.bin" ]; then  # demo trees built before the speaker worker
    $PY scripts/make_test_models.py --size tiny --out "$demo/pretrained_models" --only speaker
  fi
  export MODEL_CACHE_DIR="$PWD/$demo/pretrained_models/model_cache"
  export PROJECT_ROOT="$PWD/$demo"
  echo "== DEMO MODELS: every result is marked random_weights=true; do not read them as analysis"
else
  mode="${ASR_MODE:-paraformer}"
  speaker_ok=true
  case " $* " in  # the launcher runs the speaker worker: its model is needed too
    *" --with "*speaker*|*" --only "*speaker*) $PY scripts/download_models.py --check --speaker || speaker_ok=false ;;
  esac
  if ! $PY scripts/download_models.py --check --mode "$mode" --emotion-model "${EMOTION_MODEL:-speechbrain}" \
      || [ "$speaker_ok" = false ]; then
    echo "== models missing: trying to download them"
    if ! $PY scripts/download_models.py; then
      cat >&2 <<'MSG'

Models are missing and could not be downloaded (no network?).
Offline hosts: on a machine with internet, in a copy of this project, run
    bash scripts/install.sh && .venv/bin/python scripts/download_models.py
then copy the whole project directory (with pretrained_models/ and silero-vad/)
to this host and run this command again. Or try the flow with tiny random models:
    bash scripts/start.sh --demo-models
MSG
      exit 1
    fi
  fi
fi
exec $PY scripts/launch.py "$@"

#!/usr/bin/env bash
# asr-workbook driver.
#   ./run_all.sh [PROFILE] [--skip-done] [--only 00 03]   set up, then run notebooks 00..05 headless
#                                                        with notebooks/params/PROFILE.yaml (default: demo)
#   ./run_all.sh test [PYTEST ARGS]                       set up, then run the test suite
#   ./run_all.sh ablations [all|aug|bpe|ctc]              ablation runs, 8 min each on CPU: augmentation (2),
#                                                        characters vs BPE (1), the joint model's ctc_weight (3)
#   ./run_all.sh las [--only NN ...]                       the joint CTC/attention model: notebooks 02-05 with
#                                                        notebooks/params/las.yaml (20-minute budget, like demo)
#   ./run_all.sh stream [--only NN ...]                    the streaming DeepSpeech2 (ds2_stream): notebooks 02-05
#                                                        with notebooks/params/stream.yaml (20-minute budget, like demo)
#   ./run_all.sh setup                                    set up only
#   ./run_all.sh lab [JUPYTER ARGS]                       set up, then start JupyterLab on notebooks/
#                                                        (127.0.0.1 with a token; it prints the URL)
#   ./run_all.sh gpu-check [--quick] [--device cuda]      the GPU check (one JSON line); no setup at all, for a
#                                                        bare GPU machine: system python3, wheels from .whl/ if any
# Setup (idempotent): Debian packages for the TTS corpus, KenLM and the browser test, a virtual
# environment in .venv with requirements.txt, and KenLM's lmplz/build_binary in .tools/.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(pwd)
VENV="$REPO/.venv"
PY="$VENV/bin/python"
APT_PACKAGES="python3 python3-venv python3-dev git build-essential cmake libsndfile1 \
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng r-cran-janeaustenr \
  libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev \
  zlib1g-dev libbz2-dev liblzma-dev chromium chromium-driver fonts-dejavu-core"

log() { echo "[$(date +%H:%M:%S)] $*"; }

system_packages() {
  local missing=0
  for tool in flite text2wave espeak-ng cmake g++ chromium chromedriver; do command -v "$tool" >/dev/null || missing=1; done
  for voice in kal_diphone ked_diphone cmu_us_slt_arctic_hts; do
    ls -d /usr/share/festival/voices/*/"$voice" >/dev/null 2>&1 || missing=1
  done
  [ -e /usr/lib/R/site-library/janeaustenr/data/Rdata.rdb ] || missing=1  # the novels the sentence list comes from
  [ "$missing" = 0 ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing system packages; install them as root: apt-get install -y $APT_PACKAGES"; exit 1
  fi
  log "installing Debian packages (TTS voices, build tools, headless chromium)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
}

python_env() {
  if [ -x "$PY" ] && "$PY" -c "import asr_helpers, torch, torchaudio, kenlm, pyctcdecode, papermill, jupyterlab, selenium, anywidget" 2>/dev/null; then
    return
  fi
  log "creating $VENV and installing requirements.txt (a few minutes the first time)"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q --no-deps -e "$REPO"
  "$PY" -m asr_helpers.tools.install
}

kenlm_tools() {
  "$PY" -c "from asr_helpers.decoding.lm import ensure_kenlm_tools; ensure_kenlm_tools()"
}

setup() {
  system_packages
  python_env
  kenlm_tools
  export PATH="$VENV/bin:$PATH"
}

model_profile() {  # NAME [ARGS]: notebooks 02-05 with notebooks/params/NAME.yaml (a second model's recipe)
  local name=$1 start
  shift
  setup
  log "running notebooks 02-05 with profile '$name'"
  start=$(date +%s)
  "$PY" -m asr_helpers.tools.notebooks --profile "$name" --only 02 03 04 05 "$@"
  log "$name notebooks done in $(( $(date +%s) - start )) s; executed copies in artifacts/executed/$name/"
}

gpu_check() {
  local site=""
  if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)
    log "installing the carried wheels in .whl/ into $site"
    "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
  fi
  PYTHONPATH="$REPO${site:+:$site}" PYTHONUNBUFFERED=1 exec "${PYTHON:-python3}" -m asr_helpers bench gpu-check "$@"
}

case "${1:-demo}" in
  setup) setup ;;
  gpu-check) shift; gpu_check "$@" ;;
  test)
    shift || true
    setup
    log "running the tests"
    exec "$PY" -m pytest "$@" ;;
  lab)
    # Interactive exploration: the widgets in 00 and 04 need a live kernel and a browser.
    shift
    setup
    log "starting JupyterLab on notebooks/; open the http://127.0.0.1:...?token=... URL it prints (Ctrl-C stops it)"
    root_flag=(); [ "$(id -u)" = 0 ] && root_flag=(--allow-root)  # containers often run as root
    exec "$VENV/bin/jupyter-lab" --ip=127.0.0.1 --no-browser --ServerApp.root_dir="$REPO/notebooks" \
      "${root_flag[@]}" "$@" ;;
  ablations)
    # Same budget, one setting changed: augmentation none vs full, characters vs BPE, and the
    # joint model's ctc_weight 1.0 / 0.3 / 0.0. `./run_all.sh ablations ctc` runs one group.
    group=${2:-all}
    case "$group" in all|aug|bpe|ctc) ;; *) echo "usage: ./run_all.sh ablations [all|aug|bpe|ctc]"; exit 2 ;; esac
    setup
    for spec in "aug ablation-aug-none augment=none" "aug ablation-aug-full augment=full" \
                "bpe ablation-bpe augment=full tokenizer=bpe" \
                "ctc ablation-ctc-1.0 augment=light model=las ctc_weight=1.0" \
                "ctc ablation-ctc-0.3 augment=light model=las ctc_weight=0.3 guided_attention=1.0" \
                "ctc ablation-ctc-0.0 augment=light model=las ctc_weight=0.0 guided_attention=1.0"; do
      set -- $spec
      [ "$group" = all ] || [ "$group" = "$1" ] || continue
      log "ablation run $2"
      "$PY" -m asr_helpers.tools.notebooks --profile ablation --only 03 --skip-done --set "run_name=$2" "${@:3}"
    done
    log "ablations done; re-render the reports with: ./run_all.sh demo --only 05 (and ./run_all.sh las --only 05)" ;;
  las)
    # The joint CTC/attention model (LAS + CTC) on the offline corpus with the demo's budget:
    # one-batch test, training, every decoder, report. Extra arguments as for a profile.
    shift
    model_profile las "$@" ;;
  stream)
    # The streaming DeepSpeech2 (causal convolutions, unidirectional LSTMs, look-ahead) on the offline
    # corpus with the demo's budget: one-batch test, training, CTC decoders, report.
    shift
    model_profile stream "$@" ;;
  -*|"") echo "usage: ./run_all.sh [PROFILE|test|setup|lab|ablations [GROUP]|las|stream|gpu-check] [--skip-done] [--only NN ...]"; exit 2 ;;
  *)
    profile=${1:-demo}
    [ $# -gt 0 ] && shift
    setup
    log "running notebooks with profile '$profile'"
    start=$(date +%s)
    "$PY" -m asr_helpers.tools.notebooks --profile "$profile" "$@"
    log "all notebooks done in $(( $(date +%s) - start )) s; executed copies in artifacts/executed/$profile/" ;;
esac

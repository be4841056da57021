#!/usr/bin/env bash
# Serve the embedding model (POST /v1/embeddings) with vLLM's OpenAI-compatible server
# (vLLM pinned in requirements-gpu.txt). Every setting comes from an environment variable
# with a default; deploy/vllm/README.md lists them.
#
#   VLLM_API_KEY=$(cat /etc/assistant-studio/vllm.key) deploy/vllm/serve-embedding.sh
#
# Our own variables are EMBED_* (and MODEL_DOWNLOAD_DIR), never VLLM_*: vLLM owns that
# prefix (VLLM_PORT and VLLM_HOST_IP are its internal distributed settings, and it warns
# about VLLM_* names it does not know). VLLM_API_KEY is the one vLLM itself defines.
set -euo pipefail

me=serve-embedding.sh

# Refuse to start without a key: /v1 would be open to anyone who can reach the port.
key="${VLLM_API_KEY:-}"
if [[ -z "${key//[[:space:]]/}" ]]; then
  echo "$me: VLLM_API_KEY is not set (or blank): refusing to start an unauthenticated model server." >&2
  echo "$me: set it to a long random secret (e.g. openssl rand -hex 32), and give the same" >&2
  echo "$me: value to Assistant Studio through the variable deploy/models.yaml names." >&2
  exit 78 # EX_CONFIG; a systemd unit with RestartPreventExitStatus=78 does not retry it
fi

# Refuse a malformed setting here, in a second, rather than after vLLM has imported torch.
check() { # NAME VALUE REGEX WHAT
  if [[ ! $2 =~ $3 ]]; then
    echo "$me: $1=$2 is not $4" >&2
    exit 78
  fi
}

model="${EMBED_MODEL:-BAAI/bge-m3}" # Hugging Face id or a local directory
served_name="${EMBED_SERVED_MODEL_NAME:-bge-m3}"
host="${EMBED_HOST:-0.0.0.0}"
port="${EMBED_PORT:-8001}"
dtype="${EMBED_DTYPE:-auto}"
tensor_parallel="${EMBED_TENSOR_PARALLEL_SIZE:-1}"
gpu_memory="${EMBED_GPU_MEMORY_UTILIZATION:-0.90}"
max_model_len="${EMBED_MAX_MODEL_LEN:-8192}"
max_num_seqs="${EMBED_MAX_NUM_SEQS:-256}"
convert="${EMBED_CONVERT:-auto}"

check EMBED_PORT "$port" '^[0-9]+$' "a port number"
check EMBED_TENSOR_PARALLEL_SIZE "$tensor_parallel" '^[1-9][0-9]*$' "a GPU count"
check EMBED_GPU_MEMORY_UTILIZATION "$gpu_memory" '^(0?\.[0-9]+|1(\.0*)?)$' "a fraction (0-1]"
check EMBED_MAX_MODEL_LEN "$max_model_len" '^[1-9][0-9]*$' "a number of tokens"
check EMBED_MAX_NUM_SEQS "$max_num_seqs" '^[1-9][0-9]*$' "a number of sequences"
check EMBED_CONVERT "$convert" '^(auto|none|embed)$' "auto, none or embed"

args=(
  serve "$model"
  # Run it as a pooling (embedding) model. This replaced `--task embed` in vLLM 0.10.1;
  # later versions (0.33 included) reject --task. bge-m3 (XLMRobertaModel) is a native
  # vLLM embedding model, so auto-detection would find it too: stated so it cannot drift.
  --runner pooling
  # auto: use the model's own pooler, or adapt a generative checkpoint (e.g. a *ForCausalLM
  # embedding model) into one; `embed` forces that adaptation.
  --convert "$convert"
  # The name clients send as "model"; deploy/models.yaml `model:`.
  --served-model-name "$served_name"
  # All interfaces, so the Assistant Studio workers can reach it. The key guards only /v1,
  # /v2, /inference and /cohere: /health, /metrics and /invocations stay open, so firewall
  # this port to the workers and Prometheus. 8001 is also the Chroma port in the single-host
  # layout (deploy/README.md): on such a host set EMBED_PORT to another port.
  --host "$host"
  --port "$port"
  # Required by every /v1 call. The value shows in the process list (/proc/PID/cmdline) to
  # local users; vLLM also reads VLLM_API_KEY from its environment if this flag is dropped.
  # One word with "=": a key starting with "-" would otherwise be read as a flag.
  "--api-key=$key"
  # auto: float16 for a pooling model whose checkpoint is float32 (bge-m3 is).
  --dtype "$dtype"
  --tensor-parallel-size "$tensor_parallel"
  # Share of GPU memory this server takes. bge-m3 needs about 1.1 GB of weights: on a GPU
  # shared with the chat server give each a part (README, "Sizing").
  --gpu-memory-utilization "$gpu_memory"
  # bge-m3 reads up to 8192 tokens per input; our chunks are far shorter.
  --max-model-len "$max_model_len"
  # Inputs batched per step: a request embedding a list counts once per item. vLLM's
  # default on most GPUs, stated so every GPU behaves alike (see serve-chat.sh).
  --max-num-seqs "$max_num_seqs"
)
if [[ -n "${MODEL_DOWNLOAD_DIR:-}" ]]; then
  # Where weights are downloaded and read; without it, the Hugging Face cache (HF_HOME).
  args+=(--download-dir "$MODEL_DOWNLOAD_DIR")
fi
if [[ -n "${EMBED_EXTRA_ARGS:-}" ]]; then
  # Any further vllm serve flags, split on spaces.
  read -r -a extra <<<"$EMBED_EXTRA_ARGS"
  args+=("${extra[@]}")
fi

exec vllm "${args[@]}"

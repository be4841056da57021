#!/usr/bin/env bash
# Serve the chat model with vLLM's OpenAI-compatible server (vLLM pinned in
# requirements-gpu.txt). Every setting comes from an environment variable with a default;
# deploy/vllm/README.md lists them and says how to size them.
#
#   VLLM_API_KEY=$(cat /etc/assistant-studio/vllm.key) deploy/vllm/serve-chat.sh
#
# Our own variables are CHAT_* (and MODEL_DOWNLOAD_DIR), never VLLM_*: vLLM owns that prefix
# (VLLM_PORT and VLLM_HOST_IP are its internal distributed settings, and it warns about
# VLLM_* names it does not know). VLLM_API_KEY is the one vLLM itself defines for the key.
set -euo pipefail

me=serve-chat.sh

# Refuse to start without a key: /v1 would be open to anyone who can reach the port.
key="${VLLM_API_KEY:-}"
if [[ -z "${key//[[:space:]]/}" ]]; then
  echo "$me: VLLM_API_KEY is not set (or blank): refusing to start an unauthenticated model server." >&2
  echo "$me: set it to a long random secret (e.g. openssl rand -hex 32), and give the same" >&2
  echo "$me: value to Assistant Studio through the variable deploy/models.yaml names." >&2
  exit 78 # EX_CONFIG; the systemd unit does not restart on it (RestartPreventExitStatus=78)
fi

# Refuse a malformed setting here, in a second, rather than after vLLM has imported torch.
check() { # NAME VALUE REGEX WHAT
  if [[ ! $2 =~ $3 ]]; then
    echo "$me: $1=$2 is not $4" >&2
    exit 78
  fi
}

model="${CHAT_MODEL:-Qwen/Qwen2.5-7B-Instruct}" # Hugging Face id or a local directory
served_name="${CHAT_SERVED_MODEL_NAME:-qwen2.5-7b-instruct}"
host="${CHAT_HOST:-0.0.0.0}"
port="${CHAT_PORT:-8000}"
dtype="${CHAT_DTYPE:-auto}"
tensor_parallel="${CHAT_TENSOR_PARALLEL_SIZE:-1}"
gpu_memory="${CHAT_GPU_MEMORY_UTILIZATION:-0.90}"
max_model_len="${CHAT_MAX_MODEL_LEN:-8192}"
max_num_seqs="${CHAT_MAX_NUM_SEQS:-256}"

check CHAT_PORT "$port" '^[0-9]+$' "a port number"
check CHAT_TENSOR_PARALLEL_SIZE "$tensor_parallel" '^[1-9][0-9]*$' "a GPU count"
check CHAT_GPU_MEMORY_UTILIZATION "$gpu_memory" '^(0?\.[0-9]+|1(\.0*)?)$' "a fraction (0-1]"
check CHAT_MAX_MODEL_LEN "$max_model_len" '^[1-9][0-9]*$' "a number of tokens"
check CHAT_MAX_NUM_SEQS "$max_num_seqs" '^[1-9][0-9]*$' "a number of sequences"

args=(
  serve "$model"
  # The name clients send as "model" and /v1/models lists; deploy/models.yaml `model:`.
  --served-model-name "$served_name"
  # All interfaces, so the Assistant Studio workers on other hosts can reach it. The key
  # guards only /v1, /v2, /inference and /cohere: /health, /metrics and /invocations stay
  # open, so firewall this port to the workers and Prometheus.
  --host "$host"
  --port "$port"
  # Required by every /v1 call. The value shows in the process list (/proc/PID/cmdline) to
  # local users; vLLM also reads VLLM_API_KEY from its environment if this flag is dropped.
  # One word with "=": a key starting with "-" would otherwise be read as a flag.
  "--api-key=$key"
  # auto = the checkpoint's own type: bfloat16 for Qwen2.5. Use float16 on GPUs without
  # bfloat16 (V100, T4) and for AWQ checkpoints.
  --dtype "$dtype"
  # GPUs one replica spreads over; 1 for a 7B model. Several replicas: README.
  --tensor-parallel-size "$tensor_parallel"
  # Share of GPU memory vLLM takes for weights + KV cache; what is left after the weights
  # is KV cache, i.e. how many tokens can be in flight. Lower it to share the GPU.
  --gpu-memory-utilization "$gpu_memory"
  # Longest prompt + reply per request. Qwen2.5 allows 32768, but a shorter limit keeps
  # one long request from taking the KV cache that many short ones could use.
  --max-model-len "$max_model_len"
  # Sequences batched per step. 256 is vLLM's default on most GPUs, but it picks 1024 on
  # H100/H200-class cards: we state it so every GPU behaves alike, and it matches the
  # gateway's max_concurrency (deploy/models.yaml), so requests wait in our limiter, where
  # they can fall back to another endpoint, not in vLLM's queue.
  --max-num-seqs "$max_num_seqs"
  # Reuse the KV cache of a shared prefix: workflow turns resend the same system prompt
  # and retrieved context. vLLM enables it by default for most models; stated so it stays.
  --enable-prefix-caching
)
if [[ -n "${MODEL_DOWNLOAD_DIR:-}" ]]; then
  # Where weights are downloaded and read; without it, the Hugging Face cache (HF_HOME).
  args+=(--download-dir "$MODEL_DOWNLOAD_DIR")
fi
if [[ -n "${CHAT_EXTRA_ARGS:-}" ]]; then
  # Any further vllm serve flags, split on spaces, e.g. tool calling:
  # CHAT_EXTRA_ARGS="--enable-auto-tool-choice --tool-call-parser hermes"
  read -r -a extra <<<"$CHAT_EXTRA_ARGS"
  args+=("${extra[@]}")
fi

exec vllm "${args[@]}"

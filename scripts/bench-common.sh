# Shared helpers of scripts/bench-load, bench-firehose, bench-report and soak (sourced, not run).
#
# Provides: ROOT, BIN (release binaries), WORK (temporary directory, removed on exit), SECRET,
# STREAM, PY (the bench venv's python, after ensure_bench_venv), and functions to build, start and
# stop the servers, the Firehose endpoint and the load generator. Every process started here is
# recorded in BG_PIDS and killed (by pid) on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release"
SECRET="whsec_bench_not_a_real_secret"
STREAM="bench-stream"
SCRIPT_NAME="$(basename "$0")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/$SCRIPT_NAME.XXXXXX")"
BG_PIDS=()

# Cores: the server alone on SERVER_CPU (default 1), the load generator and the Firehose endpoint
# on LOAD_CPU (default 0), so a ratio measures the server, not the generator. taskset (util-linux)
# is used when this machine has two cores or more; PIN=0 turns pinning off.
SERVER_CPU="${SERVER_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
if [[ "${PIN:-1}" != 0 ]] && command -v taskset >/dev/null 2>&1 && (($(nproc) >= 2)); then
    ON_SERVER_CPU=(taskset -c "$SERVER_CPU")
    ON_LOAD_CPU=(taskset -c "$LOAD_CPU")
else
    ON_SERVER_CPU=()
    ON_LOAD_CPU=()
fi

bench_cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "$SCRIPT_NAME: $*" >&2
    exit 1
}

# Builds the release server and the bench binaries (loadgen, bare_hyper, firehose_endpoint).
build_release() {
    command -v cargo >/dev/null 2>&1 || die "cargo is required: install Rust from https://rustup.rs (stable)."
    echo "==> cargo build --release -p stripe-webhook-server -p stripe-webhook-benches --bins" >&2
    cargo build --release -p stripe-webhook-server -p stripe-webhook-benches --bins >&2
}

# The bench-only virtual environment ./.venv-bench with the pinned scripts/requirements-bench.txt
# (matplotlib), created or refreshed when the requirements change. Sets PY.
ensure_bench_venv() {
    local dir="$ROOT/.venv-bench" req="$ROOT/scripts/requirements-bench.txt" want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [[ ! -x "$dir/bin/python" || "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
        echo "==> installing $(basename "$req") into .venv-bench" >&2
        "${PYTHON:-python3}" -m venv "$dir" || die "cannot create .venv-bench: install python3 with venv"
        echo '*' >"$dir/.gitignore"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" ||
            die "pip could not install $req"
        echo "$want" >"$dir/.requirements.sha256"
    fi
    PY="$dir/bin/python"
}

# `jget JSON KEY[.KEY…]`: a member of a JSON object (numbers and strings as text, "" if absent).
jget() {
    "${PY:-python3}" -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v.get(k, "") if isinstance(v, dict) else ""
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1" "$2"
}

# A loopback port nobody listens on (a bind race makes the server exit, which is caught), chosen
# below the kernel's ephemeral range so that no outgoing connection of the benchmark holds it.
free_port() {
    local port low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    (( low > 2048 )) || die "the ephemeral port range starts at $low: no room below it"
    for _ in $(seq 200); do
        port=$((1024 + RANDOM % (low - 1024)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free port found"
}

# `wait_listening PID PORT LOG`: until PORT accepts connections; fails if PID exits first.
wait_listening() {
    for _ in $(seq 400); do
        if ! kill -0 "$1" 2>/dev/null; then
            tail -n 30 "$3" >&2
            die "process $1 exited before listening on $2 (log above)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
            return
        fi
        sleep 0.05
    done
    die "nothing listens on port $2 after 20 s"
}

# `start_endpoint NAME LATENCY_MS [CALL_QUOTA [BYTES_QUOTA]]`: starts firehose_endpoint (CALL_QUOTA
# put calls and BYTES_QUOTA record bytes per second, as Firehose's per-stream quotas; 0 or absent =
# none) on the load generator's core; sets EP_PID, EP_URL, EP_STATS, EP_OUT (its stdout: the start
# line, then the final stats after stop_endpoint).
start_endpoint() {
    EP_OUT="$WORK/$1.endpoint.out"
    "${ON_LOAD_CPU[@]}" "$BIN/firehose_endpoint" --stream "$STREAM" --latency-ms "$2" --call-quota "${3:-0}" \
        --bytes-quota "${4:-0}" >"$EP_OUT" 2>"$WORK/$1.endpoint.err" &
    EP_PID=$!
    BG_PIDS+=("$EP_PID")
    for _ in $(seq 200); do
        [[ -s "$EP_OUT" ]] && break
        kill -0 "$EP_PID" 2>/dev/null || die "firehose_endpoint exited: $(cat "$WORK/$1.endpoint.err")"
        sleep 0.05
    done
    local line
    line="$(head -n 1 "$EP_OUT")"
    EP_URL="$(jget "$line" endpoint_url)"
    EP_STATS="$(jget "$line" stats_url)"
    [[ -n "$EP_URL" && -n "$EP_STATS" ]] || die "firehose_endpoint printed no URLs: $line"
}

# `endpoint_stats`: the running endpoint's statistics (one JSON line).
endpoint_stats() {
    curl -fsS --max-time 30 "$EP_STATS"
}

# `stop_pid PID`: SIGTERM, wait; sets STOP_STATUS to the exit status. Call it in the main shell
# (not inside `$(...)`: a subshell cannot wait for its parent's children).
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    STOP_STATUS=0
    wait "$1" || STOP_STATUS=$?
}

# `stop_endpoint PID OUT`: stops an endpoint; sets ENDPOINT_FINAL to its final statistics.
stop_endpoint() {
    stop_pid "$1"
    ENDPOINT_FINAL="$(sed -n 2p "$2")"
    [[ -n "$ENDPOINT_FINAL" ]] || die "firehose_endpoint printed no final statistics"
}

# `server_env SINK PORT [ENDPOINT_URL]`: the environment (`env …` words) of a server on SINK.
# Firehose: the endpoint, static test credentials, no instance metadata look-ups.
server_env() {
    SERVER_ENV=(env "STRIPE_WEBHOOK_SECRET=$SECRET" HOST=127.0.0.1 "PORT=$2"
        "RUST_LOG=${BENCH_RUST_LOG:-warn}" LOG_FORMAT=json)
    case "$1" in
        memory) SERVER_ENV+=(SINK=memory ALLOW_MEMORY_SINK=true MEMORY_SINK_CAPACITY=50000000) ;;
        file)
            mkdir -p "$WORK/archive-$2"
            SERVER_ENV+=(SINK=file "ARCHIVE_DIR=$WORK/archive-$2")
            ;;
        firehose | onecall)
            SERVER_ENV+=(SINK=firehose "FIREHOSE_DELIVERY_STREAM_NAME=$STREAM" "AWS_ENDPOINT_URL=$3"
                AWS_ACCESS_KEY_ID=AKIDBENCHNOTREAL AWS_SECRET_ACCESS_KEY=bench-not-a-real-key
                AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1)
            
            ;;
        *) die "unknown sink $1" ;;
    esac
    return 0
}

# `start_server NAME SINK [ENDPOINT_URL] [EXTRA=VALUE…]`: starts stripe-webhook-server on a free
# port (SINK `onecall`: the benches' baseline_server, one PutRecord per webhook); sets SERVER_PID,
# SERVER_PORT, SERVER_LOG. SERVER_BIN, when set, is the server binary to start instead of the
# release build's.
start_server() {
    local name="$1" sink="$2" endpoint="${3:-}"
    shift 2
    [[ $# -gt 0 ]] && shift
    SERVER_PORT="$(free_port)"
    SERVER_LOG="$WORK/$name.server.log"
    server_env "$sink" "$SERVER_PORT" "$endpoint"
    local bin="${SERVER_BIN:-$BIN/stripe-webhook-server}"
    [[ "$sink" == onecall ]] && bin="$BIN/baseline_server"
    "${SERVER_ENV[@]}" "$@" METRICS_ADDR=off "${ON_SERVER_CPU[@]}" "$bin" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    BG_PIDS+=("$SERVER_PID")
    wait_listening "$SERVER_PID" "$SERVER_PORT" "$SERVER_LOG"
}

# `start_bare NAME`: starts bare_hyper on a free port; sets SERVER_PID, SERVER_PORT, SERVER_LOG.
start_bare() {
    SERVER_PORT="$(free_port)"
    SERVER_LOG="$WORK/$1.server.log"
    "${ON_SERVER_CPU[@]}" "$BIN/bare_hyper" --host 127.0.0.1 --port "$SERVER_PORT" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    BG_PIDS+=("$SERVER_PID")
    wait_listening "$SERVER_PID" "$SERVER_PORT" "$SERVER_LOG"
}

# `start_loadgen OUT PORT ARGS…`: starts the load generator against the server on PORT in the
# background (its JSON line goes to OUT, its errors to OUT.err); sets LG_PID.
start_loadgen() {
    local out="$1" port="$2"
    shift 2
    "${ON_LOAD_CPU[@]}" "$BIN/loadgen" --url "http://127.0.0.1:$port/webhook/stripe" --secret "$SECRET" \
        --events-dir fixtures/events "$@" >"$out" 2>"$out.err" &
    LG_PID=$!
    BG_PIDS+=("$LG_PID")
}

# `wait_loadgen OUT`: waits for LG_PID; fails with its errors if it failed.
wait_loadgen() {
    wait "$LG_PID" || die "loadgen failed: $(cat "$1.err")"
}

# The 1-, 5- and 15-minute load averages now.
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Machine and revision, as Markdown list items (load averages when the script started and now).
machine_lines() {
    local cpu_model mem_gib commit dirty=""
    cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    mem_gib="$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
    commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && dirty=" (working tree has uncommitted changes)"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit$dirty"
    echo "- Machine: $(nproc) CPUs ($cpu_model), $mem_gib GiB RAM, shared with other work; load average when the script started: $LOAD_AT_START, at the end: $(loadavg)"
    if ((${#ON_SERVER_CPU[@]})); then
        echo "- Pinned: the server on CPU $SERVER_CPU, the load generator and the Firehose endpoint on CPU $LOAD_CPU (taskset)"
    else
        echo "- Not pinned (PIN=0, no taskset, or one CPU): server and load generator share the CPUs"
    fi
}

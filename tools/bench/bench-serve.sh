#!/usr/bin/env bash
# The serving figures of issue 18: the Gowalla iALS model at 256 factors, exported as flat (exact)
# and as HNSW, served by `recforge serve` and loaded with wrk at 1, 16 and 64 connections (GET
# for known users; on the flat export also POSTs that fold in a new user, POSTs of several
# known users and GETs of similar items); the offline batched throughput of `recommend --all` on the same export; HNSW's
# recall@20 against exact (training items masked); 10 hot reloads under load. Prints one
# Markdown report.
#
#   tools/bench/bench-serve.sh [--work DIR] [--run RUN_DIR] [--recforge BIN] [--connections 1,16,64]
#                              [--duration 20] [--wrk-threads 1] [--server-threads N]
#                              [--batch-wait-ms MS] [--max-batch N] [--hnsw-m 32]
#                              [--ef-construction 200] [--ef-search 32] [--reloads 10]
#                              [--fold-in-items 20] [--post-users 4] [--similar 1] [--data DIR]
#                              [--offline-only]
#                              [--out REPORT.md]
#
# --work DIR     where the run, the exports and the temporary files go (default: a new
#                /tmp/recforge-bench-serve.XXXXXX); never inside the repository. A DIR of an
#                earlier call is reused: its run DIR/runs/gowalla-ials-256 (trained when absent),
#                and DIR/export-flat and DIR/export-hnsw when their manifests name that run and the
#                asked index settings (exported again otherwise). The reload phase exports the run
#                into DIR/export-flat again, 10 times (recforge keeps the newest two versions).
# --run RUN_DIR  a trained run to export instead (any model; the figures of the issue want the
#                256-factor Gowalla iALS run).
# --recforge BIN the binary (default build/release/recforge).
# --duration S   seconds of wrk per point (default 20).
# --wrk-threads  wrk's -t (default 1; at most the smallest connection count). wrk and the server
#                share the machine's cores; the report says how many.
# --fold-in-items N  items per new user in the fold-in points (POST /v1/recommend with one
#                new user of N distinct items drawn uniformly; 0: no fold-in points).
# --post-users N known users per request in the POST points (POST /v1/recommend with N distinct
#                users drawn uniformly; 0: no such points).
# --similar 0|1  the similar-items points (GET /v1/similar-items?item=ID&k=20 for an item drawn
#                uniformly; default 1).
# --offline-only everything that needs no server: train, export, recall, offline throughput.
#
# Exit status 0 when everything was measured (the goals are reported, met or not), 1 when a step
# failed (the message names it). The server is stopped on every exit (SIGTERM, then SIGKILL after
# 15 s), and its exit status is reported.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
lua="$root/tools/bench/serve-recommend.lua"
recall_py="$root/tools/bench/serve_recall.py"

work="" run="" bin="$root/build/release/recforge" conns="1,16,64" duration=20 wrk_threads=1
server_threads="" batch_wait="" max_batch="" hnsw_m=32 ef_construction=200 ef_search=32
reloads=10 data="$root/../shared/data/gowalla" offline_only=0 out="" k=20 admin_token="" fold_in_items=20 post_users=4 similar=1

die() { echo "bench-serve: $*" >&2; exit 1; }
log() { echo "bench-serve: $*" >&2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --work) need_value "$@"; work=$2; shift 2 ;;
    --run) need_value "$@"; run=$2; shift 2 ;;
    --recforge) need_value "$@"; bin=$2; shift 2 ;;
    --connections) need_value "$@"; conns=$2; shift 2 ;;
    --duration) need_value "$@"; duration=$2; shift 2 ;;
    --wrk-threads) need_value "$@"; wrk_threads=$2; shift 2 ;;
    --server-threads) need_value "$@"; server_threads=$2; shift 2 ;;
    --batch-wait-ms) need_value "$@"; batch_wait=$2; shift 2 ;;
    --max-batch) need_value "$@"; max_batch=$2; shift 2 ;;
    --admin-token) need_value "$@"; admin_token=$2; shift 2 ;;
    --hnsw-m) need_value "$@"; hnsw_m=$2; shift 2 ;;
    --ef-construction) need_value "$@"; ef_construction=$2; shift 2 ;;
    --ef-search) need_value "$@"; ef_search=$2; shift 2 ;;
    --reloads) need_value "$@"; reloads=$2; shift 2 ;;
    --fold-in-items) need_value "$@"; fold_in_items=$2; shift 2 ;;
    --post-users) need_value "$@"; post_users=$2; shift 2 ;;
    --similar) need_value "$@"; similar=$2; shift 2 ;;
    --data) need_value "$@"; data=$2; shift 2 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --offline-only) offline_only=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for pair in "--duration:$duration" "--wrk-threads:$wrk_threads" "--hnsw-m:$hnsw_m" \
            "--ef-construction:$ef_construction" "--ef-search:$ef_search" "--reloads:$reloads"; do
  is_uint "${pair#*:}" && ((10#${pair#*:} >= 1)) || die "${pair%%:*} ${pair#*:}: expected a positive integer"
done
is_uint "$fold_in_items" || die "--fold-in-items $fold_in_items: expected an integer >= 0"
fold_in_items=$((10#$fold_in_items))
is_uint "$post_users" || die "--post-users $post_users: expected an integer >= 0"
post_users=$((10#$post_users))
[[ $similar == 0 || $similar == 1 ]] || die "--similar $similar: expected 0 or 1"
[[ $conns =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--connections $conns: expected a comma-separated list of positive integers, e.g. 1,16,64"
IFS=, read -r -a conn_list <<<"$conns"
for c in "${conn_list[@]}"; do
  ((10#$c >= wrk_threads)) || die "--connections $c is below --wrk-threads $wrk_threads (wrk needs at least one connection per thread)"
done
[[ -z $admin_token || -r $admin_token ]] || die "--admin-token $admin_token: not a readable file"
[[ -x $bin ]] || die "--recforge $bin: not an executable (build it: cmake --preset release && cmake --build --preset release)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
python=$root/.venv/bin/python
[[ -x $python ]] || python=python3
command -v curl >/dev/null || die "curl not found (tools/setup.sh installs it)"
if ((!offline_only)); then command -v wrk >/dev/null || die "wrk not found (tools/setup.sh installs it)"; fi

# The work directory: created here when not given; never inside the repository.
if [[ -z $work ]]; then
  work=$(mktemp -d /tmp/recforge-bench-serve.XXXXXX)
else
  resolved=$(realpath -m "$work")
  case "$resolved/" in "$(realpath "$root")/"*) die "--work $work is inside the repository $root; use a directory outside it" ;; esac
  mkdir -p "$resolved"
fi
work=$(cd "$work" && pwd -P)
log "work directory $work"
tmp=$(mktemp -d "$work/.tmp.XXXXXX")

server_pid="" wrk_pid="" server_rc=""
stop_server() {
  [[ -n $server_pid ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "bench-serve: the server did not exit 15 s after SIGTERM; killing it" >&2
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  server_rc=0; wait "$server_pid" 2>/dev/null || server_rc=$?
  server_pid=""
}
cleanup() {
  local rc=$?
  [[ -n $wrk_pid ]] && kill "$wrk_pid" 2>/dev/null || true
  stop_server
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

commands=()   # every measured command, printed in the report
note_cmd() { commands+=("$*"); }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"%.6f\", $1}"; }   # floating-point arithmetic
cond() { awk "BEGIN {exit !($1)}"; }              # a floating-point comparison as a status

# 1. The run: given, reused, or trained (Gowalla iALS, 256 factors).
if [[ -z $run ]]; then
  run=$work/runs/gowalla-ials-256
  if [[ ! -f $run/metrics.json ]]; then
    [[ -f $data/train.txt && -f $data/test.txt ]] || die "--data $data: expected train.txt and test.txt (the Gowalla split)"
    data=$(cd "$data" && pwd)
    [[ -e $run ]] && die "$run exists but holds no finished run (no metrics.json); remove it or pass --run"
    log "training $run (Gowalla iALS, 256 factors)"
    cmd=("$bin" train "$root/configs/gowalla-ials.yaml" --set model.factors=256
         --set "run.dir=$work/runs" --set run.name=gowalla-ials-256 --set run.exists=error
         --set "data.path=$data/train.txt" --set "data.test_path=$data/test.txt")
    note_cmd "${cmd[*]}"
    "${cmd[@]}" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log" >&2; die "training failed"; }
  else
    log "reusing the run $run"
  fi
fi
[[ -d $run ]] || die "--run $run: not a directory"
run=$(cd "$run" && pwd -P)

# 2. The exports, reused when their manifest names this run and these index settings.
manifest_matches() {  # DIR TYPE -> 0 when DIR/manifest.json is an export of $run with that index
  [[ -f $1/manifest.json ]] || return 1
  "$python" - "$1/manifest.json" "$run" "$2" "$hnsw_m" "$ef_construction" "$ef_search" <<'EOF'
import json, os, sys
path, run, kind, m, efc, efs = sys.argv[1:]
try:
    man = json.load(open(path))
    idx = man["index"]
    ok = os.path.realpath(man["source"]["run_dir"]) == run and idx["type"] == kind
    if kind == "hnsw":
        ok = ok and (idx["hnsw_m"], idx["ef_construction"], idx["ef_search"]) == (int(m), int(efc), int(efs))
except (OSError, ValueError, KeyError, TypeError):
    ok = False
sys.exit(0 if ok else 1)
EOF
}
flat=$work/export-flat hnsw=$work/export-hnsw
flat_export=("$bin" export "$run" --out "$flat" --set index.type=flat)
hnsw_export=("$bin" export "$run" --out "$hnsw" --set index.type=hnsw --set "index.hnsw_m=$hnsw_m"
             --set "index.ef_construction=$ef_construction" --set "index.ef_search=$ef_search")
note_cmd "${flat_export[*]}"
note_cmd "${hnsw_export[*]}"
if manifest_matches "$flat" flat; then log "reusing $flat"; else
  log "exporting $flat"; "${flat_export[@]}" >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log" >&2; die "export of $flat failed"; }
fi
if manifest_matches "$hnsw" hnsw; then log "reusing $hnsw"; else
  log "exporting $hnsw (HNSW M $hnsw_m, efConstruction $ef_construction, efSearch $ef_search)"
  "${hnsw_export[@]}" >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log" >&2; die "export of $hnsw failed"; }
fi
users=$(grep -c . "$flat/user_ids.txt")
first_user=$(head -n 1 "$flat/user_ids.txt")

# 3. Offline: recommend --all --k 20 on each export (best of 3 wall times, the CSV to a temp
# file), and one single-user call for the load-and-verify time included in those.
offline() {  # EXPORT CSV -> prints the best wall seconds of 3 runs
  local best="" t0 t1 s
  for _ in 1 2 3; do
    t0=$(now)
    "$bin" recommend "$1" --all --k "$k" --format csv --out "$2" 2>"$tmp/offline.log" ||
      { cat "$tmp/offline.log" >&2; die "recommend --all on $1 failed"; }
    t1=$(now)
    s=$(calc "$t1 - $t0")
    if [[ -z $best ]] || cond "$s < $best"; then best=$s; fi
  done
  printf '%.3f\n' "$best"
}
single() {  # EXPORT -> best wall seconds of 3 single-user calls (load, verify, one query)
  local best="" t0 t1 s
  for _ in 1 2 3; do
    t0=$(now)
    "$bin" recommend "$1" --user "$first_user" --k "$k" >/dev/null 2>"$tmp/single.log" ||
      { cat "$tmp/single.log" >&2; die "recommend --user on $1 failed"; }
    t1=$(now)
    s=$(calc "$t1 - $t0")
    if [[ -z $best ]] || cond "$s < $best"; then best=$s; fi
  done
  printf '%.3f\n' "$best"
}
log "offline: recommend --all --k $k on both exports (3 runs each)"
note_cmd "$bin recommend $flat --all --k $k --format csv --out TMP/flat.csv   # best wall time of 3"
note_cmd "$bin recommend $hnsw --all --k $k --format csv --out TMP/hnsw.csv   # best wall time of 3"
note_cmd "$bin recommend $flat --user $first_user --k $k   # load + verify + 1 query, best of 3"
flat_all_s=$(offline "$flat" "$tmp/flat.csv")
hnsw_all_s=$(offline "$hnsw" "$tmp/hnsw.csv")
flat_one_s=$(single "$flat")
offline_ups=$(calc "$users / $flat_all_s")
offline_net_s=$(calc "$flat_all_s - $flat_one_s")
offline_net_ups=""
if cond "$offline_net_s > 0"; then offline_net_ups=$(calc "$users / $offline_net_s"); fi
hnsw_offline_ups=$(calc "$users / $hnsw_all_s")

# 4. Recall@20 of HNSW against exact, training items masked, all users.
note_cmd "$python tools/bench/serve_recall.py TMP/flat.csv TMP/hnsw.csv --k $k"
recall_line=$("$python" "$recall_py" "$tmp/flat.csv" "$tmp/hnsw.csv" --k "$k") || die "the recall comparison failed"
recall=$(awk '{print $2}' <<<"$recall_line")

# 5. Serving.
port=""
start_server() {  # EXPORT
  local args=("$bin" serve "$1" --listen 127.0.0.1:0)
  [[ -n $server_threads ]] && args+=(--threads "$server_threads")
  [[ -n $batch_wait ]] && args+=(--batch-wait-ms "$batch_wait")
  [[ -n $max_batch ]] && args+=(--max-batch "$max_batch")
  [[ -n $admin_token ]] && args+=(--admin-token "$admin_token")
  note_cmd "${args[*]}"
  "${args[@]}" >"$tmp/serve.out" 2>"$tmp/serve.err" &
  server_pid=$!
  local line=""
  for _ in $(seq 600); do
    line=$(head -n 1 "$tmp/serve.out" 2>/dev/null || true)
    [[ -n $line && $(wc -l <"$tmp/serve.out") -ge 1 ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/serve.err" >&2; die "recforge serve $1 exited before listening"; }
    sleep 0.1
  done
  [[ $line =~ ^recforge\ serve:\ listening\ on\ http://127\.0\.0\.1:([0-9]+)$ ]] ||
    die "recforge serve's first stdout line is \"$line\"; expected \"recforge serve: listening on http://127.0.0.1:PORT\""
  port=${BASH_REMATCH[1]}
  local code=""
  for _ in $(seq 600); do
    code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
    [[ $code == 200 ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/serve.err" >&2; die "recforge serve $1 exited before it was ready"; }
    sleep 0.1
  done
  die "recforge serve $1: /readyz still answers $code after 60 s"
}

declare -A res   # res[index,conns,field]
run_wrk() {  # INDEX EXPORT CONNS DURATION LOGFILE [new-user:N | users:N | similar]
  local ids=$2/user_ids.txt mode=()
  [[ $# -ge 6 ]] && mode=(1 "$6")
  [[ $# -ge 6 && ( $6 == new-user:* || $6 == similar ) ]] && ids=$2/item_ids.txt
  local args=(wrk -t "$wrk_threads" -c "$3" -d "${4}s" --timeout 2s -s "$lua"
              "http://127.0.0.1:$port" -- "$ids" "$k" "${mode[@]}")
  note_cmd "${args[*]}"
  "${args[@]}" >"$5" 2>&1
}
parse_wrk() {  # INDEX CONNS LOGFILE
  local line
  line=$(grep '^WRK_RESULT ' "$3" | tail -n 1) || { cat "$3" >&2; die "wrk printed no WRK_RESULT line ($1, $2 connections)"; }
  for kv in ${line#WRK_RESULT }; do res[$1,$2,${kv%%=*}]=${kv#*=}; done
}

if ((!offline_only)); then
  for index in flat hnsw; do
    dir=$flat; [[ $index == hnsw ]] && dir=$hnsw
    log "serving $dir"
    start_server "$dir"
    # A short warm-up so that the first point does not pay for page faults and thread start-up.
    wrk -t 1 -c 1 -d 2s -s "$lua" "http://127.0.0.1:$port" -- "$dir/user_ids.txt" "$k" >/dev/null 2>&1 || true
    for c in "${conn_list[@]}"; do
      log "wrk: $index, $c connections, $duration s"
      run_wrk "$index" "$dir" "$c" "$duration" "$tmp/wrk-$index-$c.log" || { cat "$tmp/wrk-$index-$c.log" >&2; die "wrk failed ($index, $c connections)"; }
      parse_wrk "$index" "$c" "$tmp/wrk-$index-$c.log"
    done
    # The other points on the flat export: POSTs folding in a new user, POSTs of several known
    # users, GETs of similar items.
    posts=()
    [[ $index == flat ]] && ((fold_in_items > 0)) && posts+=("fold new-user:$fold_in_items")
    [[ $index == flat ]] && ((post_users > 0)) && posts+=("post users:$post_users")
    [[ $index == flat ]] && ((similar)) && posts+=("similar similar")
    for point in "${posts[@]}"; do
      name=${point%% *} mode=${point#* }
      for c in "${conn_list[@]}"; do
        log "wrk: $mode, flat, $c connections, $duration s"
        run_wrk "$name" "$dir" "$c" "$duration" "$tmp/wrk-$name-$c.log" "$mode" ||
          { cat "$tmp/wrk-$name-$c.log" >&2; die "wrk failed ($mode, $c connections)"; }
        parse_wrk "$name" "$c" "$tmp/wrk-$name-$c.log"
      done
    done
    stop_server
    res[$index,server_rc]=$server_rc
  done

  # 6. Hot reloads under load: wrk at 64 connections on the flat export while the run is exported
  # into it again and /admin/reload is posted, $reloads times, one every `gap` seconds. wrk runs
  # with a long -d and is stopped with SIGINT (it then prints its summary) `gap` seconds after the
  # last reload answered, so that the load covers every reload whatever the exports take.
  log "reload phase: $reloads re-exports + POST /admin/reload under 64 connections"
  start_server "$flat"
  auth=()
  [[ -n $admin_token ]] && auth=(-H "Authorization: Bearer $(tr -d '\n' <"$admin_token")")
  metrics_reloads() {  # prints "label value" per recforge_reloads_total series
    curl -s --max-time 10 "http://127.0.0.1:$port/metrics" | awk '/^recforge_reloads_total/ {print $1, $2}'
  }
  metrics_reloads >"$tmp/reloads-before.txt"
  gap=3
  reload_seconds=$((gap * (reloads + 1) + 600))   # an upper bound; stopped earlier (below)
  rc_threads=$wrk_threads; ((64 >= rc_threads)) || rc_threads=64
  args=(wrk -t "$rc_threads" -c 64 -d "${reload_seconds}s" --timeout 2s -s "$lua"
        "http://127.0.0.1:$port" -- "$flat/user_ids.txt" "$k")
  note_cmd "${args[*]}   # meanwhile, every ${gap} s: ${flat_export[*]} && curl -X POST http://127.0.0.1:PORT/admin/reload; SIGINT to wrk ${gap} s after the last"
  "${args[@]}" >"$tmp/wrk-reload.log" 2>&1 &
  wrk_pid=$!
  posts_ok=0 posts_late=0 reload_codes=()
  start=$(now)
  for i in $(seq "$reloads"); do
    # Sleep until slot i (the load runs before the first reload and after the last).
    wait_s=$(calc "$start + $gap * $i - $(now)")
    if cond "$wait_s > 0"; then sleep "$wait_s"; fi
    "${flat_export[@]}" >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log" >&2; die "re-export $i into $flat failed"; }
    code=$(curl -s --max-time 300 -o "$tmp/reload-$i.json" -w '%{http_code}' -X POST "${auth[@]}" "http://127.0.0.1:$port/admin/reload" || true)
    reload_codes+=("$code")
    [[ $code == 2?? ]] && posts_ok=$((posts_ok + 1))
    kill -0 "$wrk_pid" 2>/dev/null || posts_late=$((posts_late + 1))
  done
  sleep "$gap"
  kill -0 "$wrk_pid" 2>/dev/null || posts_late=$((posts_late + 1))   # wrk ended early
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || { cat "$tmp/wrk-reload.log" >&2; wrk_pid=""; die "wrk failed in the reload phase"; }
  wrk_pid=""
  parse_wrk reload 64 "$tmp/wrk-reload.log"
  metrics_reloads >"$tmp/reloads-after.txt"
  stop_server
  res[reload,server_rc]=$server_rc
  # recforge_reloads_total per result label: after - before.
  reload_deltas=$(awk 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; sub(/^recforge_reloads_total/, "", $1); printf "%s%s +%d", sep, $1, d; sep = ", "}' \
                    "$tmp/reloads-before.txt" "$tmp/reloads-after.txt")
  reload_ok_delta=$(awk 'NR == FNR {b[$1] = $2; next} $1 ~ /result="(ok|success|loaded)"/ {d += $2 - b[$1]} END {print d + 0}' \
                      "$tmp/reloads-before.txt" "$tmp/reloads-after.txt")
  reload_bad_delta=$(awk 'NR == FNR {b[$1] = $2; next} $1 !~ /result="(ok|success|loaded)"/ {d += $2 - b[$1]} END {print d + 0}' \
                       "$tmp/reloads-before.txt" "$tmp/reloads-after.txt")
fi

# 7. The report.
fmt() { printf "%.${2:-1}f" "$1"; }
cores=$(nproc)
{
  echo "## recforge serve: Gowalla iALS, 256 factors ($(date -u +%Y-%m-%dT%H:%MZ), $(uname -n))"
  echo
  echo "Run \`$run\` ($users users, $(grep -c . "$flat/item_ids.txt") items); k = $k; exports \`$flat\` (flat, exact) and"
  echo "\`$hnsw\` (HNSW, M $hnsw_m, efConstruction $ef_construction, efSearch $ef_search)."
  echo
  echo "- Offline batched throughput, \`recommend --all --k $k\` on the flat export (best of 3, wall time incl. load, verify and CSV): $(fmt "$flat_all_s" 2) s, **$(fmt "$offline_ups") users/s**"
  if [[ -n $offline_net_ups ]]; then
    echo "- The same net of loading (minus a single-user call, $(fmt "$flat_one_s" 2) s): $(fmt "$offline_net_ups") users/s"
  fi
  echo "- Offline on the HNSW export: $(fmt "$hnsw_all_s" 2) s, $(fmt "$hnsw_offline_ups") users/s"
  echo "- HNSW recall@$k against exact, training items masked, all users: **$(fmt "$recall" 4)** ($recall_line)"
  if ((!offline_only)); then
    echo
    echo "| index | connections | req/s | p50 ms | p99 ms | p99.9 ms | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    indexes=(flat hnsw)
    ((fold_in_items > 0)) && indexes+=(fold)
    ((post_users > 0)) && indexes+=(post)
    ((similar)) && indexes+=(similar)
    for index in "${indexes[@]}"; do
      label=$index
      [[ $index == fold ]] && label="flat, POST fold-in of a new user ($fold_in_items items)"
      [[ $index == post ]] && label="flat, POST of $post_users known users"
      [[ $index == similar ]] && label="flat, GET similar-items of an item"
      for c in "${conn_list[@]}"; do
        echo "| $label | $c | $(fmt "${res[$index,$c,rps]}") | $(fmt "${res[$index,$c,p50_ms]}" 2) | $(fmt "${res[$index,$c,p99_ms]}" 2) | $(fmt "${res[$index,$c,p999_ms]}" 2) | ${res[$index,$c,errors]} |"
      done
    done
    echo
    echo "errors = wrk's socket errors (connect, read, write, timeout at 2 s) + responses outside 200-299."
    echo "wrk (-t $wrk_threads) and the server share this machine's $cores cores; ${duration} s per point after a 2 s warm-up."
    echo "Server exit status after SIGTERM: flat ${res[flat,server_rc]}, hnsw ${res[hnsw,server_rc]}, reload phase ${res[reload,server_rc]}."
    echo
    echo "Goals (issue 18):"
    last=${conn_list[-1]}
    verdict() { if cond "$1"; then echo "met"; else echo "NOT met"; fi; }
    if [[ " ${conn_list[*]} " == *" 64 "* ]]; then
      f64=${res[flat,64,rps]} h64=${res[hnsw,64,rps]}
      ratio=$(calc "$f64 / $offline_ups")
      echo "- exact at 64 connections / offline: $(fmt "$f64") / $(fmt "$offline_ups") = **$(fmt "$ratio" 2)** (goal >= 0.50: $(verdict "$ratio >= 0.5"))"
      if [[ -n $offline_net_ups ]]; then
        ratio_net=$(calc "$f64 / $offline_net_ups")
        echo "  - against the offline figure net of loading: $(fmt "$ratio_net" 2) ($(verdict "$ratio_net >= 0.5"))"
      fi
      echo "- p99 at 64 connections: flat $(fmt "${res[flat,64,p99_ms]}" 2) ms ($(verdict "${res[flat,64,p99_ms]} <= 50")), hnsw $(fmt "${res[hnsw,64,p99_ms]}" 2) ms ($(verdict "${res[hnsw,64,p99_ms]} <= 50")) (goal <= 50 ms)"
      hx=$(calc "$h64 / $f64")
      echo "- HNSW / exact at 64 connections: **$(fmt "$hx" 2)x** at recall@$k $(fmt "$recall" 4) (goal >= 5x at >= 0.95: $(verdict "$hx >= 5 && $recall >= 0.95"))"
    else
      echo "- (the goals are stated at 64 connections, which --connections $conns does not include; last point: $last)"
    fi
    rerr=${res[reload,64,errors]}
    echo "- $reloads hot reloads under 64 connections: $posts_ok of $reloads POST /admin/reload answered 2xx (codes ${reload_codes[*]}); wrk: ${res[reload,64,requests]} requests, $(fmt "${res[reload,64,rps]}") req/s, errors $rerr (connect ${res[reload,64,connect]}, read ${res[reload,64,read]}, write ${res[reload,64,write]}, timeout ${res[reload,64,timeout]}, non-2xx ${res[reload,64,non2xx]}); p99 $(fmt "${res[reload,64,p99_ms]}" 2) ms; /metrics recforge_reloads_total: ${reload_deltas:-no series}; reload answers after the load had ended: $posts_late"
    echo "  - zero failed requests across $reloads reloads: $(verdict "$rerr == 0 && $posts_ok == $reloads && $reload_ok_delta == $reloads && $reload_bad_delta == 0 && $posts_late == 0")"
  fi
  echo
  echo "Commands (TMP = a temporary directory under the work directory; PORT = the server's ephemeral port):"
  echo
  echo '```'
  printf '%s\n' "${commands[@]}"
  echo '```'
} | if [[ -n $out ]]; then tee "$out"; else cat; fi

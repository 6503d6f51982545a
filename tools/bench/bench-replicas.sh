#!/usr/bin/env bash
# Memory of serving replicas: starts N `recforge serve EXPORT_DIR --listen 127.0.0.1:0` processes
# (N defaults to 4), waits until each answers GET /readyz with 200, sends each one
# GET /v1/recommend?user=<first id of user_ids.txt>&k=20, then reads each process's
# /proc/PID/smaps_rollup and prints a Markdown table: per process RSS, PSS, private and shared
# bytes, and what each replica beyond the first adds. The servers are always stopped (SIGTERM,
# then SIGKILL after 10 s) and the temporary directory removed, however the script ends.
#   tools/bench/bench-replicas.sh EXPORT_DIR [N]
#   tools/bench/bench-replicas.sh --report PID...    (the table for processes already running)
# The binary: $RECFORGE, else build/release/recforge, else build/cpu/recforge.
#
# Figures (kB, from smaps_rollup): RSS counts every resident page of the process; PSS divides each
# shared page by the number of processes mapping it; private = Private_Clean + Private_Dirty
# (pages only this process maps); shared = Shared_Clean + Shared_Dirty. The factors are mapped
# read-only from the export's .npy files (docs/export.md, "Memory and replicas"), so N replicas
# hold them once: a replica beyond the first adds its private bytes only (the shared pages are
# there already), and the N processes together hold the sum of their PSS.
set -euo pipefail

die() {
  echo "bench-replicas: $*" >&2
  exit 1
}

# The value in kB of `key` in /proc/PID/smaps_rollup ("Rss", "Pss", ...), 0 when absent.
smaps_kb() {
  local pid=$1 key=$2
  [ -r "/proc/$pid/smaps_rollup" ] || die "/proc/$pid/smaps_rollup: cannot read (is process $pid running, and yours?)"
  awk -v key="$key:" '$1 == key { v = $2 } END { print v + 0 }' "/proc/$pid/smaps_rollup"
}

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

# Prints the table for the processes given.
report() {
  local pid rss pss priv shared n=0 sum_rss=0 sum_pss=0 sum_priv=0 max_shared=0 extra_priv=0
  for pid in "$@"; do
    [ -r "/proc/$pid/smaps_rollup" ] || die "/proc/$pid/smaps_rollup: cannot read (is process $pid running, and yours?)"
  done
  echo "| process | RSS MiB | PSS MiB | private MiB | shared MiB |"
  echo "|---|---:|---:|---:|---:|"
  for pid in "$@"; do
    rss=$(smaps_kb "$pid" Rss)
    pss=$(smaps_kb "$pid" Pss)
    priv=$(($(smaps_kb "$pid" Private_Clean) + $(smaps_kb "$pid" Private_Dirty)))
    shared=$(($(smaps_kb "$pid" Shared_Clean) + $(smaps_kb "$pid" Shared_Dirty)))
    echo "| $pid | $(mib "$rss") | $(mib "$pss") | $(mib "$priv") | $(mib "$shared") |"
    n=$((n + 1))
    sum_rss=$((sum_rss + rss))
    sum_pss=$((sum_pss + pss))
    sum_priv=$((sum_priv + priv))
    [ "$n" -gt 1 ] && extra_priv=$((extra_priv + priv))
    [ "$shared" -gt "$max_shared" ] && max_shared=$shared
  done
  echo
  echo "- $n processes: RSS summed $(mib "$sum_rss") MiB (counts shared pages once per process);" \
       "PSS summed $(mib "$sum_pss") MiB (what they hold together)"
  if [ "$n" -gt 1 ]; then
    echo "- each replica beyond the first adds its private bytes:" \
         "$(mib $((extra_priv / (n - 1)))) MiB on average; its share of the shared pages (PSS -" \
         "private) is $(mib $(((sum_pss - sum_priv) / n))) MiB on average, of" \
         "$(mib "$max_shared") MiB shared"
  fi
}

if [ "${1:-}" = "--report" ]; then
  shift
  [ $# -ge 1 ] || die "--report needs process ids"
  report "$@"
  exit 0
fi

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 EXPORT_DIR [N]   or   $0 --report PID..."
export_dir=$1
n=${2:-4}
[[ $n =~ ^[1-9][0-9]*$ ]] || die "N is \"$n\"; expected a whole number of at least 1"
[ -r "$export_dir/user_ids.txt" ] || die "$export_dir/user_ids.txt: cannot read; expected an export directory"
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RECFORGE:-}
if [ -z "$bin" ]; then
  for b in "$root/build/release/recforge" "$root/build/cpu/recforge"; do
    [ -x "$b" ] && { bin=$b; break; }
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || die "no recforge binary (build it, or set RECFORGE)"
command -v curl > /dev/null || die "curl is needed"

work=$(mktemp -d)
pids=()
stop() {
  local pid waited=0
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2> /dev/null && [ "$waited" -lt 100 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
  done
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM HUP

for i in $(seq 1 "$n"); do
  "$bin" serve "$export_dir" --listen 127.0.0.1:0 > "$work/out.$i" 2> "$work/err.$i" &
  pids+=("$!")
done

# Each server's address from its first stdout line, then its readiness (loading verifies every
# SHA-256: allow 10 minutes).
urls=()
for i in $(seq 1 "$n"); do
  pid=${pids[$((i - 1))]}
  url=""
  for _ in $(seq 1 6000); do
    line=$(head -n 1 "$work/out.$i" 2> /dev/null || true)
    if [[ $line =~ ^recforge\ serve:\ listening\ on\ (http://[^[:space:]]+)$ ]]; then
      url=${BASH_REMATCH[1]}
      code=$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz" || true)
      [ "$code" = 200 ] && break
    fi
    kill -0 "$pid" 2> /dev/null || die "server $i (pid $pid) exited: $(tail -n 3 "$work/err.$i")"
    sleep 0.1
  done
  [ "${code:-}" = 200 ] || die "server $i (pid $pid) not ready after 10 minutes (first line: \"$line\")"
  urls+=("$url")
done

user=$(head -n 1 "$export_dir/user_ids.txt")
for i in $(seq 1 "$n"); do
  code=$(curl -s -o "$work/answer.$i" -w '%{http_code}' --get --data-urlencode "user=$user" \
         --data-urlencode k=20 "${urls[$((i - 1))]}/v1/recommend" || true)
  [ "$code" = 200 ] || die "server $i: GET /v1/recommend?user=$user&k=20 answered $code: $(head -c 300 "$work/answer.$i")"
done

echo "$n replicas of \`recforge serve $export_dir\` after one GET /v1/recommend each ($(date -u +%FT%TZ), $(nproc) CPUs):"
echo
report "${pids[@]}"

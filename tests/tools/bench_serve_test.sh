#!/usr/bin/env bash
# ctest `tools.bench_serve` (label tools): the parsing logic of the serving benchmark's helpers.
#  1. tools/bench/serve_recall.py on hand-made lists (recall per user, the k cutoff, a user missing
#     from the approximate lists, --min's exit status).
#  2. tools/bench/serve-recommend.lua under wrk against a small Python HTTP server on an ephemeral
#     port: the users asked for are the file's (URL-encoded and decoded back), non-2xx answers are
#     counted as errors and 2xx ones are not. No timing is asserted.
#   usage: bench_serve_test.sh SOURCE_DIR
set -euo pipefail
src=$1
py="$src/.venv/bin/python"
[[ -x $py ]] || py=python3
command -v wrk >/dev/null || { echo "bench_serve test: wrk is missing; run tools/setup.sh" >&2; exit 1; }

work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() { echo "bench_serve test: $*" >&2; exit 1; }

# --- 1. serve_recall.py -----------------------------------------------------------------------
# Exact top-2: u1 {10, 11}, u2 {20, 21}, u3 {30, 31}. Approximate: u1 {10, 12} (1 of 2), u2 {21, 20}
# (2 of 2, other order), u3 missing (0 of 2); u1's rank-3 item 11 lies beyond k = 2 and must not
# count. Mean recall@2 = (0.5 + 1 + 0) / 3 = 0.5, with two users (u1, u3) below 0.95.
cat > exact.csv <<'EOF'
user,rank,item,score
u1,1,10,0.9
u1,2,11,0.8
u1,3,12,0.7
u2,1,20,0.9
u2,2,21,0.8
u3,1,30,0.9
u3,2,31,0.8
EOF
cat > approx.csv <<'EOF'
user,rank,item,score
u1,1,10,0.9
u1,2,12,0.7
u1,3,11,0.6
u2,1,21,0.8
u2,2,20,0.9
EOF
out=$("$py" "$src/tools/bench/serve_recall.py" exact.csv approx.csv --k 2)
[[ $out == "recall@2 0.5000 users 3 below_0.95 2 min 0.0000" ]] || fail "serve_recall.py --k 2 printed \"$out\""
# At k = 3 u1 has {10, 11, 12} in both: (1 + 1 + 0) / 3.
out=$("$py" "$src/tools/bench/serve_recall.py" exact.csv approx.csv --k 3)
[[ $out == "recall@3 0.6667 users 3 below_0.95 1 min 0.0000" ]] || fail "serve_recall.py --k 3 printed \"$out\""
if "$py" "$src/tools/bench/serve_recall.py" exact.csv approx.csv --k 2 --min 0.51 >/dev/null; then
  fail "serve_recall.py --min 0.51 exited 0 for a mean recall of 0.5"
fi
"$py" "$src/tools/bench/serve_recall.py" exact.csv approx.csv --k 2 --min 0.5 >/dev/null ||
  fail "serve_recall.py --min 0.5 failed for a mean recall of 0.5"
printf 'u,r,i\n' > bad.csv
if "$py" "$src/tools/bench/serve_recall.py" bad.csv approx.csv 2>err.txt; then fail "a bad header was accepted"; fi
grep -q 'bad.csv: header' err.txt || fail "the bad-header message does not name the file: $(cat err.txt)"

# --- 2. serve-recommend.lua under wrk ---------------------------------------------------------
printf '1\n2\nuser a/b\n' > users.txt
cat > server.py <<'EOF'
# Answers GET /v1/recommend with 200 for users 1 and "user a/b" and 404 otherwise, GET
# /v1/similar-items with 404 for item 2 and 200 otherwise; GET /seen lists the distinct (user, k)
# pairs asked for (("item:ID", k) for similar items). POST /v1/recommend records the JSON body's sorted
# "users" and its k (GET /posts lists the distinct ones) and answers 200. Prints its port first.
import http.server, json, sys, threading, urllib.parse
seen, posts, lock = set(), set(), threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            posts.add((tuple(sorted(body["users"])), body["k"]))
        self.send_response(200 if self.path == "/v1/recommend" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def do_GET(self):
        q = urllib.parse.urlparse(self.path)
        p = urllib.parse.parse_qs(q.query)
        if q.path == "/reset":
            with lock:
                seen.clear()
            body, code = b"{}", 200
        elif q.path in ("/seen", "/posts"):
            with lock:
                body = json.dumps(sorted(seen if q.path == "/seen" else posts)).encode()
            code = 200
        else:
            user, k = p.get("user", [""])[0], p.get("k", [""])[0]
            if q.path == "/v1/similar-items":
                user = "item:" + p.get("item", [""])[0]
            with lock:
                seen.add((user, k))
            code = 200 if q.path == "/v1/recommend" and user in ("1", "user a/b") else 404
            code = 200 if q.path == "/v1/similar-items" and user != "item:2" else code
            body = b'{"items": []}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
"$py" server.py > port.txt &
server=$!
for _ in $(seq 100); do [[ -s port.txt ]] && break; sleep 0.1; done
port=$(head -n 1 port.txt)
[[ $port =~ ^[0-9]+$ ]] || fail "the test server printed no port"

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
result=$(wrk -t 1 -c 2 -d 2s -s "$src/tools/bench/serve-recommend.lua" "http://127.0.0.1:$port" -- users.txt 7 |
         grep '^WRK_RESULT ') || fail "wrk printed no WRK_RESULT line"
requests=$(field requests "$result") non2xx=$(field non2xx "$result") errors=$(field errors "$result")
status=$(field status "$result")
((requests > 0)) || fail "no request completed: $result"
# User 2 draws 404s, the others 200: some of each, and the errors are exactly the 404s.
((non2xx > 0 && non2xx < requests)) || fail "non2xx $non2xx of $requests requests (1 of 3 users answers 404): $result"
((errors == non2xx && status == non2xx)) || fail "errors $errors, status $status, non2xx $non2xx differ: $result"
seen=$(curl -s "http://127.0.0.1:$port/seen")
[[ $seen == '[["1", "7"], ["2", "7"], ["user a/b", "7"]]' ]] ||
  fail "the server was asked for $seen; expected the three users of users.txt with k 7"

# Every user answered 200: no errors at all.
printf '1\nuser a/b\n' > ok_users.txt
result=$(wrk -t 1 -c 2 -d 1s -s "$src/tools/bench/serve-recommend.lua" "http://127.0.0.1:$port" -- ok_users.txt |
         grep '^WRK_RESULT ') || fail "wrk printed no WRK_RESULT line"
(($(field requests "$result") > 0 && $(field errors "$result") == 0)) || fail "errors with only 200 answers: $result"
# users:2 POSTs two distinct users of the file per request, with the k given: of the three
# users, every pair (and no single user or repeated one) is asked for, each answered 200.
result=$(wrk -t 1 -c 2 -d 1s -s "$src/tools/bench/serve-recommend.lua" "http://127.0.0.1:$port" -- users.txt 5 1 users:2 |
         grep '^WRK_RESULT ') || fail "wrk printed no WRK_RESULT line (users:2)"
(($(field requests "$result") > 0 && $(field errors "$result") == 0)) || fail "users:2: $result"
posts=$(curl -s "http://127.0.0.1:$port/posts")
[[ $posts == '[[["1", "2"], 5], [["1", "user a/b"], 5], [["2", "user a/b"], 5]]' ]] ||
  fail "users:2 POSTed $posts; expected every pair of the three users with k 5"
# similar: GET /v1/similar-items for the file's items (URL-encoded), item 2 answered 404.
curl -s -o /dev/null "http://127.0.0.1:$port/reset"
result=$(wrk -t 1 -c 2 -d 1s -s "$src/tools/bench/serve-recommend.lua" "http://127.0.0.1:$port" -- users.txt 3 1 similar |
         grep '^WRK_RESULT ') || fail "wrk printed no WRK_RESULT line (similar)"
requests=$(field requests "$result") non2xx=$(field non2xx "$result")
((requests > 0 && non2xx > 0 && non2xx < requests)) || fail "similar: non2xx $non2xx of $requests (1 of 3 items answers 404): $result"
seen=$(curl -s "http://127.0.0.1:$port/seen")
[[ $seen == '[["item:1", "3"], ["item:2", "3"], ["item:user a/b", "3"]]' ]] ||
  fail "similar asked for $seen; expected the three items of the file with k 3"
if wrk -t 1 -c 1 -d 1s -s "$src/tools/bench/serve-recommend.lua" "http://127.0.0.1:$port" -- users.txt 3 1 similars >out.txt 2>&1 &&
   grep -q '^WRK_RESULT' out.txt; then
  fail "an unknown mode was accepted"
fi
grep -q 'mode similars is not' out.txt || fail "an unknown mode's message: $(cat out.txt)"
echo "bench_serve test: ok"

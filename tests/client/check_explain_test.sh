#!/usr/bin/env bash
# ctest `client.check_explain` (label client): `recforge explain` against implicit's ALS explain.
# Trains a tiny synthetic iALS run with the settings under which recforge's user solve is
# implicit's (model.unobserved_weight 1, model.reg_exp 0, model.unobserved_exp 0; see
# tools/client/check_explain.py), exports it, and runs the check in .venv (implicit 0.7.2 from
# tools/requirements.txt); then checks the verbs' user errors and report-user's JSON against
# the export's own files.
#   usage: check_explain_test.sh RECFORGE_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
py="$src/.venv/bin/python"
if [[ ! -x "$py" ]]; then
  echo "client test: $py is missing; run tools/setup.sh (it creates .venv from" \
       "tools/requirements.txt, implicit included)" >&2
  exit 1
fi
if ! "$py" -c "import numpy, scipy, implicit" 2>/dev/null; then
  echo "client test: .venv lacks NumPy, SciPy or implicit; run tools/setup.sh to update it" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat > small.yaml <<'YAML'
run:
  name: small
  progress: off
data:
  format: synthetic
  cache: false
synthetic:
  users: 150
  items: 100
  interactions: 3000
split:
  method: leave_last
weighting:
  scheme: log
model:
  factors: 8
  iterations: 4
  unobserved_weight: 1.0
  unobserved_exp: 0
  reg_exp: 0
  regularization: 0.3
  alpha: 0.5
YAML
"$bin" train small.yaml >/dev/null 2>train.log || { cat train.log >&2; exit 1; }
"$bin" export runs/small --out exp >/dev/null 2>export.log || { cat export.log >&2; exit 1; }
"$py" "$src/tools/client/check_explain.py" exp --recforge "$bin" --pairs 20

# Unknown ids: one sentence, exit status 1.
expect_error() {  # expected stderr line, then the command's arguments
  local want=$1
  shift
  local rc=0
  "$bin" "$@" >out.txt 2>err.txt || rc=$?
  if [[ $rc -ne 1 || "$(cat err.txt)" != "$want" ]]; then
    echo "client test: recforge $* gave exit status $rc and: $(cat err.txt)" >&2
    echo "expected exit status 1 and: $want" >&2
    exit 1
  fi
}
user=$(head -1 exp/user_ids.txt)
item=$(head -1 exp/item_ids.txt)
expect_error 'recforge: error: exp: user "nobody" is not in this export; expected a user id of its training data' \
  explain exp --user nobody --item "$item"
expect_error 'recforge: error: exp: item "nothing" is not in this export; expected an item id of its training data' \
  explain exp --user "$user" --item nothing
expect_error 'recforge: error: exp: user "nobody" is not in this export; expected a user id of its training data' \
  report-user exp --user nobody

# report-user's JSON against the export's files, read with NumPy.
"$bin" report-user exp --user "$user" --k 4 --format json >report.json
"$py" - "$user" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
user = sys.argv[1]
root = Path("exp") / Path("exp/current").readlink()
ids = (root / "user_ids.txt").read_text().split("\n")[:-1]
items = (root / "item_ids.txt").read_text().split("\n")[:-1]
u = ids.index(user)
indptr, indices = np.load(root / "seen_indptr.npy"), np.load(root / "seen_indices.npy")
data = np.load(root / "seen_data.npy")
r = json.load(open("report.json"))
seen = [items[j] for j in indices[indptr[u]:indptr[u + 1]]]
assert r["training"]["count"] == len(seen), r["training"]
assert [x["item"] for x in r["training"]["interactions"]] == seen
assert [x["confidence"] for x in r["training"]["interactions"]] == \
    [float(v) for v in data[indptr[u]:indptr[u + 1]]]
assert r["validation"] is None and r["test"] is None
x = np.load(root / "user_factors.npy")[u].astype(np.float64)
assert abs(r["embedding"]["norm"] - np.linalg.norm(x)) <= 1e-12 * np.linalg.norm(x)
assert r["embedding"]["in_export"] is True
recs = r["recommendations"]["items"]
assert len(recs) == 4 and all(len(x["explained_by"]) == min(3, len(seen)) for x in recs)
assert not set(x["item"] for x in recs) & set(seen)  # training items are not recommended
print("client test: report-user matches the export's files")
PY
echo "client test: all checks passed"

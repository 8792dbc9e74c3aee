#!/usr/bin/env bash
# Benchmark (not a test): encrypt and decrypt a ~1 MiB YAML document of 10,000 values with
# `sealant sops` and with the real sops, on the same machine in the same run.
#   cargo build --release -p sealant && tests/bench/sops.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SEALANT=${SEALANT:-target/release/sealant}
KEYS=tests/fixtures/sops/age-keys.txt
RECIPIENT=age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/plain.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for g in range(100):
        f.write(f"group{g}:\n")
        for i in range(100):
            f.write(f"    key{i}: {'v' * 90}{g:03d}{i:03d}\n")
PY
echo "document: $(wc -c <"$work/plain.yaml") bytes, 10000 values"

seconds() { python3 -c 'import sys,time; t=time.perf_counter(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(f"{time.perf_counter()-t:.3f}")' "$@"; }
best() { local b=; for _ in 1 2 3; do t=$(seconds "$@"); if [[ -z $b ]] || python3 -c "import sys; sys.exit(0 if $t < $b else 1)"; then b=$t; fi; done; echo "$b"; }

"$SEALANT" sops encrypt --age "$RECIPIENT" "$work/plain.yaml" >"$work/ours.enc.yaml"
sops --disable-version-check -e --age "$RECIPIENT" "$work/plain.yaml" >"$work/theirs.enc.yaml"
export SOPS_AGE_KEY_FILE=$KEYS

se=$(best "$SEALANT" sops encrypt --age "$RECIPIENT" "$work/plain.yaml")
te=$(best sops --disable-version-check -e --age "$RECIPIENT" "$work/plain.yaml")
sd=$(best "$SEALANT" sops decrypt "$work/theirs.enc.yaml")
td=$(best sops --disable-version-check -d "$work/theirs.enc.yaml")
python3 - "$se" "$te" "$sd" "$td" <<'PY'
import sys
se, te, sd, td = map(float, sys.argv[1:])
print(f"encrypt: sealant {se:.3f} s, sops {te:.3f} s, sealant/sops = {se/te:.2f}")
print(f"decrypt: sealant {sd:.3f} s, sops {td:.3f} s, sealant/sops = {sd/td:.2f}")
PY

# Peak memory of one decryption each (GNU time, when installed).
if [[ -x /usr/bin/time ]]; then
    for tool in sealant sops; do
        if [[ $tool == sealant ]]; then cmd=("$SEALANT" sops decrypt); else cmd=(sops --disable-version-check -d); fi
        rss=$(/usr/bin/time -f %M "${cmd[@]}" "$work/theirs.enc.yaml" 2>&1 >/dev/null | tail -1)
        echo "decrypt peak RSS: $tool $((rss / 1024)) MiB"
    done
fi

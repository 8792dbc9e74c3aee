#!/usr/bin/env bash
# Unseal speed beside OpenSSL's RSA-4096 private-key rate, in one sitting on this machine.
#   tests/bench/unseal-vs-openssl.sh
# Prints unseals per second of 32 B, 4 KiB and 1 MiB values (criterion, core's `hybrid` bench),
# OpenSSL's `speed -seconds 5 rsa4096` private-key operations per second, and their ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."

openssl_rate() {
  openssl speed -seconds 5 rsa4096 2>/dev/null | awk '/^rsa 4096 bits/ {print $(NF-1)}'
}

before=$(openssl_rate)
cargo bench --quiet -p sealant-core --bench hybrid -- unseal >/dev/null 2>&1
after=$(openssl_rate)
openssl=$(python3 -c "print(($before + $after) / 2)")

target=${CARGO_TARGET_DIR:-target}
printf '%-8s %12s %10s\n' value "unseal/s" "x openssl"
for size in 32B 4KiB 1MiB; do
  python3 - "$target/criterion/rsa4096/unseal/$size/new/estimates.json" "$openssl" "$size" <<'PY'
import json, sys
est = json.load(open(sys.argv[1]))
rate = 1e9 / est["mean"]["point_estimate"]
print(f"{sys.argv[3]:<8} {rate:12.1f} {rate / float(sys.argv[2]):10.2f}")
PY
done
printf 'openssl speed rsa4096: %.1f private ops/s (before %s, after %s)\n' "$openssl" "$before" "$after"

//! Seal and unseal one value of 32 B, 4 KiB and 1 MiB with RSA-4096 (the demo key).
//!
//! The RSA private-key operation is the floor of unsealing; compare with
//! `openssl speed rsa4096` on the same machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealant_core::keys::parse_private_keys;
use sealant_core::{Certificate, Scope, hybrid_decrypt, hybrid_encrypt};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn bench(c: &mut Criterion) {
    let cert_pem = std::fs::read_to_string(repo("keys-example/demo.tls.crt")).expect("demo certificate");
    let cert = Certificate::from_pem(&cert_pem).expect("certificate parses");
    let keys = parse_private_keys(&std::fs::read(repo("keys-example/demo.tls.key")).expect("demo key")).expect("key");
    let label = Scope::Strict.label("bench", "values");
    let mut rng = rand::rng();

    let mut group = c.benchmark_group("rsa4096");
    group.sample_size(20);
    for (name, size) in [("32B", 32usize), ("4KiB", 4096), ("1MiB", 1 << 20)] {
        let value = vec![0x5au8; size];
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("seal", name), &value, |b, value| {
            b.iter(|| hybrid_encrypt(&mut rng, cert.public_key(), black_box(value), &label).expect("seal"))
        });
        let item = hybrid_encrypt(&mut rng, cert.public_key(), &value, &label).expect("seal");
        group.bench_with_input(BenchmarkId::new("unseal", name), &item, |b, item| {
            b.iter(|| hybrid_decrypt(&keys, black_box(item), &label).expect("unseal"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The image deploy/image/build writes: an OCI archive that the tools users have read
//! (skopeo here; podman uses the same library, and docker load reads its manifest.json), with
//! the user, entrypoint and labels it promises, and the same bytes when built again.

use super::*;

fn build(out: &Path) {
    let status = Command::new(repo().join("deploy/image/build"))
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run deploy/image/build");
    assert!(status.success(), "deploy/image/build failed (its messages are above)");
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo is installed (tests/setup)");
    assert!(out.status.success(), "skopeo {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_image_archive_is_reproducible_and_reads_as_promised() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.oci.tar"), dir.path().join("second.oci.tar"));
    build(&first);
    build(&second);
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(), "two builds, the same bytes");
    let size = std::fs::metadata(&first).unwrap().len();

    let reference = format!("oci-archive:{}", first.display());
    let config: Value = serde_json::from_str(&skopeo(&["inspect", "--config", &reference])).unwrap();
    assert_eq!(config["config"]["User"], "1001:1001");
    assert_eq!(config["config"]["Entrypoint"], json!(["/usr/local/bin/sealant-controller"]));
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    let revision = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(repo()).output().unwrap();
    let head = String::from_utf8_lossy(&revision.stdout).trim().to_owned();
    assert!(
        labels["org.opencontainers.image.revision"].as_str().unwrap().starts_with(&head),
        "the revision label names the commit"
    );
    let manifest: Value = serde_json::from_str(&skopeo(&["inspect", "--raw", &reference])).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "FROM scratch: one layer, ours");

    // The same image as a docker-archive, which `docker load` reads.
    let docker = dir.path().join("docker.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &reference,
        &format!("docker-archive:{}:localhost/sealant-controller:test", docker.display()),
    ]);
    eprintln!("image figures: archive {:.1} MB", size as f64 / 1e6);
}

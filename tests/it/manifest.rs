//! Manifests: every file of a delivery with its BLAKE3, as the appliance
//! serves it (`/api/v1/deliveries/ID/manifest` and `.b3`) and as the agent
//! keeps it beside what arrived (`.ferry-manifest.b3`), checked by Debian's
//! b3sum and by `ferry verify`.

use std::path::Path;
use std::process::Command;

use ferry_tests::{Appliance, blake3_file, write_random};

use crate::rules::Rest;

/// `b3sum -c` run in `dir`: (passed, what it printed).
fn b3sum_check(dir: &Path) -> (bool, String) {
    let out = Command::new("b3sum")
        .args(["-c", ".ferry-manifest.b3"])
        .current_dir(dir)
        .output()
        .expect("b3sum (tests/run installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_received_delivery_carries_a_manifest_that_b3sum_and_ferry_verify_check() {
    let app = Appliance::start();
    let ann = app.client(&app.media_user("ann@example.com"));
    let dir_key = app.user("dir@client.example", "collaborator");
    let director = app.client(&dir_key);
    let stranger = app.user("bob@example.com", "collaborator");
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("cut v2.mov"), 5 << 20, 1);
    let frames = src.path().join("shot010");
    std::fs::create_dir(&frames).unwrap();
    for f in 1001..=1010 {
        write_random(&frames.join(format!("shot010.{f}.exr")), 70_000, f);
    }
    // And one file already on the appliance, sent from the share.
    write_random(&app.share.join("grade/lut.cube"), 40_000, 7);
    let sent = ann.run(&[
        "send",
        src.path().join("cut v2.mov").to_str().unwrap(),
        frames.to_str().unwrap(),
        "--to",
        "dir@client.example",
        "--dest",
        "share=media/review-0900",
        "--name",
        "review-0900",
        "--json",
    ]);
    assert!(sent.ok, "{}", sent.stderr);
    let from_share = ann.run(&[
        "send",
        "share=media/grade/lut.cube",
        "--to",
        "dir@client.example",
        "--name",
        "grade",
        "--json",
    ]);
    assert!(from_share.ok, "{}", from_share.stderr);

    let into = tempfile::tempdir().unwrap();
    let pulled = director.run(&["pull", "--into", into.path().to_str().unwrap()]);
    assert!(pulled.ok, "{}", pulled.stderr);
    let got = into.path().join("review-0900");
    let lut = into.path().join("grade");

    // The appliance's manifest: each file, its size and its BLAKE3.
    let rest = Rest::new(&app);
    let (status, jobs) = rest.call("GET", "/api/v1/jobs?all=true", Some(&dir_key), None);
    assert_eq!(status, 200, "{jobs}");
    let delivery = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["delivery_name"] == "review-0900")
        .unwrap_or_else(|| panic!("{jobs}"))["delivery"]
        .as_i64()
        .unwrap();
    let (status, manifest) = rest.call(
        "GET",
        &format!("/api/v1/deliveries/{delivery}/manifest"),
        Some(&dir_key),
        None,
    );
    assert_eq!(status, 200, "{manifest}");
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 11, "{manifest}");
    for f in files {
        let path = f["path"].as_str().unwrap();
        let local = got.join(path);
        assert_eq!(f["blake3"], blake3_file(&local).to_hex().as_str(), "{path}");
        assert_eq!(
            f["size"],
            std::fs::metadata(&local).unwrap().len(),
            "{path}"
        );
    }
    // Nobody else learns of it.
    let (status, _) = rest.call(
        "GET",
        &format!("/api/v1/deliveries/{delivery}/manifest.b3"),
        Some(&stranger),
        None,
    );
    assert_eq!(status, 404);

    // Beside what arrived, in b3sum's format: both checks pass.
    for folder in [&got, &lut] {
        assert!(
            folder.join(".ferry-manifest.b3").exists(),
            "{}",
            folder.display()
        );
        let (ok, said) = b3sum_check(folder);
        assert!(ok, "b3sum -c in {}: {said}", folder.display());
        let verified = director.run(&["verify", folder.to_str().unwrap()]);
        assert!(verified.ok, "{}{}", verified.stdout, verified.stderr);
    }
    assert!(
        std::fs::read_to_string(got.join(".ferry-manifest.b3"))
            .unwrap()
            .contains("  cut v2.mov\n")
    );

    // One changed byte: both fail, and name the file.
    let frame = got.join("shot010/shot010.1004.exr");
    let mut bytes = std::fs::read(&frame).unwrap();
    bytes[30_000] ^= 1;
    std::fs::write(&frame, bytes).unwrap();
    let (ok, said) = b3sum_check(&got);
    assert!(!ok, "{said}");
    assert!(said.contains("shot010/shot010.1004.exr: FAILED"), "{said}");
    let verified = director.run(&["verify", got.to_str().unwrap()]);
    assert!(!verified.ok);
    assert!(
        verified
            .stdout
            .contains("differs: shot010/shot010.1004.exr"),
        "{}",
        verified.stdout
    );
    // And a missing one.
    std::fs::remove_file(got.join("cut v2.mov")).unwrap();
    let verified = director.run(&["verify", got.to_str().unwrap()]);
    assert!(
        verified.stdout.contains("missing: cut v2.mov"),
        "{}",
        verified.stdout
    );
    assert!(
        verified.stderr.contains("2 of 11 files do not match"),
        "{}",
        verified.stderr
    );
}

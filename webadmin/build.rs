//! Installs the browser libraries the web pages serve (tus-js-client for
//! resumable uploads) from npm, pinned by `js/package-lock.json`, and puts
//! the file the pages load where the crate embeds it. No CDN: the
//! appliance serves them itself, under its own CSP.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let js = manifest.join("js");
    println!("cargo:rerun-if-changed=js/package.json");
    println!("cargo:rerun-if-changed=js/package-lock.json");
    let tus = js.join("node_modules/tus-js-client/dist/tus.min.js");
    // Cargo runs this on a first build and whenever the lock file changes:
    // each time, npm installs exactly what the lock file pins.
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&js)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!(
                "`npm ci` in {} failed ({s}): it installs tus-js-client for the send page",
                js.display()
            ),
            Err(e) => panic!(
                "cannot run npm ({e}): building the web admin installs tus-js-client from npm; \
                 install Node.js and npm (Debian: apt install npm)"
            ),
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::copy(&tus, out.join("tus.min.js")).expect("copying tus.min.js into the build");
}

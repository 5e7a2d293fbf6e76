//! Applying a script with `nft -f -`: the only place that runs nft.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Why nft refused a script.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("nft refused the change: {0}")]
    Refused(String),
}

/// The nft binary to use.
#[derive(Debug, Clone)]
pub struct Nft {
    pub binary: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            binary: PathBuf::from("nft"),
        }
    }
}

impl Nft {
    /// Applies `script` as one transaction: all of it or none.
    pub fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut child = Command::new(&self.binary)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| NftError::Spawn(self.binary.display().to_string(), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| NftError::Spawn(self.binary.display().to_string(), e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| NftError::Spawn(self.binary.display().to_string(), e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NftError::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }
}

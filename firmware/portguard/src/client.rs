//! The client ferryd uses to talk to portguard. One connection per
//! request: simple, and a restarted helper is picked up by the next call.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use crate::protocol::{self, LeaseInfo, Request, Response, WireError};

/// Why portguard could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    // The cause is part of the message, not a separate source, so that
    // error chains do not print it twice.
    #[error("cannot reach ferry-portguard at {path}: {cause}")]
    Unreachable { path: String, cause: std::io::Error },
    #[error("ferry-portguard: {0}")]
    Refused(String),
    #[error("ferry-portguard: {0}")]
    Wire(#[from] WireError),
    #[error("ferry-portguard answered {0:?} to {1}")]
    Unexpected(Box<Response>, &'static str),
    #[error("ferry-portguard did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug, Clone)]
pub struct PortguardClient {
    path: PathBuf,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl PortguardClient {
    pub fn new(path: impl AsRef<Path>) -> Self {
        PortguardClient {
            path: path.as_ref().to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let exchange = async {
            let mut stream = UnixStream::connect(&self.path).await.map_err(|cause| {
                ClientError::Unreachable {
                    path: self.path.display().to_string(),
                    cause,
                }
            })?;
            // portguard may refuse (a stranger's uid) and close before it
            // has read our request; its refusal is still there to read, and
            // says more than the broken pipe the write then meets.
            let written = protocol::write(&mut stream, request).await;
            let response = protocol::read::<_, Response>(&mut stream).await;
            match (written, response) {
                (_, Ok(Response::Error(e))) => Err(ClientError::Refused(e)),
                (Ok(()), Ok(other)) => Ok(other),
                (Err(e), _) | (Ok(()), Err(e)) => Err(e.into()),
            }
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout(TIMEOUT))?
    }

    pub async fn lease(
        &self,
        ip: IpAddr,
        ttl: Duration,
        avoid: &[u16],
    ) -> Result<LeaseInfo, ClientError> {
        match self
            .call(&Request::Lease {
                ip,
                ttl_secs: ttl.as_secs() as u32,
                avoid: avoid.to_vec(),
            })
            .await?
        {
            Response::Leased(l) => Ok(l),
            other => Err(ClientError::Unexpected(Box::new(other), "lease")),
        }
    }

    pub async fn renew(&self, lease: u64, ttl: Duration) -> Result<LeaseInfo, ClientError> {
        match self
            .call(&Request::Renew {
                lease,
                ttl_secs: ttl.as_secs() as u32,
            })
            .await?
        {
            Response::Renewed(l) => Ok(l),
            other => Err(ClientError::Unexpected(Box::new(other), "renew")),
        }
    }

    pub async fn release(&self, lease: u64) -> Result<(), ClientError> {
        match self.call(&Request::Release { lease }).await? {
            Response::Released => Ok(()),
            other => Err(ClientError::Unexpected(Box::new(other), "release")),
        }
    }

    pub async fn list(&self) -> Result<Vec<LeaseInfo>, ClientError> {
        match self.call(&Request::List).await? {
            Response::Leases(l) => Ok(l),
            other => Err(ClientError::Unexpected(Box::new(other), "list")),
        }
    }
}

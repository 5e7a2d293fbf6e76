//! Requests and replies on portguard's socket.
//!
//! Each message is a 4-byte big-endian length and a postcard body. The
//! length is checked against [`MAX_MESSAGE`] before anything is read, and
//! the body must decode to one of the closed enums below or it is refused.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message accepted either way.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What ferryd may ask. Nothing else can be expressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open a port of the range to `ip` for `ttl_secs`, avoiding `avoid`
    /// (ports ferryd could not bind).
    Lease {
        ip: IpAddr,
        ttl_secs: u32,
        avoid: Vec<u16>,
    },
    /// Extend a lease by `ttl_secs` from now.
    Renew { lease: u64, ttl_secs: u32 },
    /// Close a lease now.
    Release { lease: u64 },
    /// Every live lease.
    List,
}

/// A live lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: u64,
    pub ip: IpAddr,
    pub port: u16,
    pub expires_in_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Leased(LeaseInfo),
    Renewed(LeaseInfo),
    Released,
    Leases(Vec<LeaseInfo>),
    Error(String),
}

/// A message that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A message's body as it travels (without the length prefix).
pub fn encode_body<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_stdvec(msg).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Writes one message.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), WireError> {
    let body = encode_body(msg)?;
    if body.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(body.len()));
    }
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message, refusing an oversized length before reading its body.
pub async fn read<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<T, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body)
}

/// Decodes a body; trailing bytes are an error.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, WireError> {
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_refusals() {
        let req = Request::Lease {
            ip: "198.51.100.2".parse().unwrap(),
            ttl_secs: 30,
            avoid: vec![45190],
        };
        let mut buf = Vec::new();
        write(&mut buf, &req).await.unwrap();
        let back: Request = read(&mut buf.as_slice()).await.unwrap();
        assert_eq!(back, req);

        let huge = (MAX_MESSAGE as u32 + 1).to_be_bytes();
        assert!(matches!(
            read::<_, Request>(&mut &huge[..]).await,
            Err(WireError::TooLarge(_))
        ));
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            read::<_, Request>(&mut &garbage[..]).await,
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            read::<_, Request>(&mut &[0u8, 0][..]).await,
            Err(WireError::Closed)
        ));
        // An unknown variant tag is not a request.
        let unknown = [0, 0, 0, 1, 9];
        assert!(read::<_, Request>(&mut &unknown[..]).await.is_err());
    }
}

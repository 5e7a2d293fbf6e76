//! The appliance's certificate and key, kept in the state every node
//! shares: the first node (or console) to need one offers it, every other
//! node takes what is kept, so one fingerprint pins the whole appliance.
//!
//! Whoever reads the database can then act as the appliance; the database
//! already holds everything that grants access (sessions, key hashes), so
//! it is guarded as the key is.

use crate::db::{Optional, params};
use crate::{Database, Result};

/// A certificate chain and its private key, as PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Certificate {
    // The key stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The certificate kept, if any.
    pub fn certificate(&self) -> Result<Option<Certificate>> {
        self.conn()?
            .query_row(
                "SELECT cert_pem, key_pem FROM certificate WHERE id = 1",
                params![],
                |r| {
                    Ok(Certificate {
                        cert_pem: r.get(0)?,
                        key_pem: r.get(1)?,
                    })
                },
            )
            .optional()
    }

    /// Keeps `offered` unless a certificate is kept already; returns the
    /// one kept. Two nodes that start together on a new database both get
    /// the one that won.
    pub fn offer_certificate(&self, offered: &Certificate) -> Result<Certificate> {
        self.conn()?.execute(
            "INSERT INTO certificate (id, cert_pem, key_pem) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO NOTHING",
            params![offered.cert_pem, offered.key_pem],
        )?;
        Ok(self.certificate()?.unwrap_or_else(|| offered.clone()))
    }

    /// Replaces the certificate and key (an admin installed another pair).
    pub fn replace_certificate(&self, new: &Certificate) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO certificate (id, cert_pem, key_pem) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET cert_pem = ?1, key_pem = ?2",
            params![new.cert_pem, new.key_pem],
        )?;
        Ok(())
    }

    /// Keeps a renewed chain for the key `key_pem`; false (nothing
    /// changed) when the key kept is no longer that key, so that the pair
    /// kept stays a pair.
    pub fn renew_certificate(&self, key_pem: &str, chain_pem: &str) -> Result<bool> {
        let changed = self.conn()?.execute(
            "UPDATE certificate SET cert_pem = ?2 WHERE id = 1 AND key_pem = ?1",
            params![key_pem, chain_pem],
        )?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: u8) -> Certificate {
        Certificate {
            cert_pem: format!("cert {n}"),
            key_pem: format!("key {n}"),
        }
    }

    #[test]
    fn the_first_offer_is_kept_and_renewal_keeps_the_pair_a_pair() {
        for db in crate::testing::databases() {
            eprintln!("on {}", db.engine());
            assert_eq!(db.certificate().unwrap(), None);
            assert_eq!(db.offer_certificate(&pair(1)).unwrap(), pair(1));
            assert_eq!(
                db.offer_certificate(&pair(2)).unwrap(),
                pair(1),
                "first wins"
            );

            assert!(db.renew_certificate("key 1", "cert 1b").unwrap());
            assert_eq!(db.certificate().unwrap().unwrap().cert_pem, "cert 1b");

            db.replace_certificate(&pair(3)).unwrap();
            assert!(
                !db.renew_certificate("key 1", "cert 1c").unwrap(),
                "a chain for the old key is not kept beside the new key"
            );
            assert_eq!(db.certificate().unwrap(), Some(pair(3)));
        }
    }

    #[test]
    fn the_key_is_not_debug_printed() {
        let shown = format!("{:?}", pair(7));
        assert!(
            shown.contains("cert 7") && !shown.contains("key 7"),
            "{shown}"
        );
    }
}

//! When to replace the certificate in use.
//!
//! A certificate is renewed once two thirds of its lifetime have passed,
//! as Let's Encrypt advises: 30 days before the end of a 90-day
//! certificate, and in proportion for the short-lived ones a test CA
//! issues. A certificate that the CA did not issue (the self-signed one
//! of first start) or that does not name the appliance's public name is
//! replaced at once. A failed order is tried again after a growing pause,
//! so a misconfigured appliance does not run into the CA's rate limits.

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::AcmeError;

/// What the renewal rule needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The DNS names it is valid for.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Issuer and subject are the same: the appliance made it itself.
    pub self_issued: bool,
}

impl Issued {
    /// Reads a DER certificate.
    pub fn read(der: &CertificateDer<'_>) -> Result<Self, AcmeError> {
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| AcmeError::Certificate(e.to_string()))?;
        let time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            } else {
                SystemTime::UNIX_EPOCH
            }
        };
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Issued {
            names,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            self_issued: cert.issuer() == cert.subject(),
        })
    }

    /// The moment two thirds of the lifetime have passed.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime * 2 / 3
    }
}

/// Why a certificate is replaced now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The appliance's own self-signed certificate: browsers warn.
    SelfIssued,
    /// Issued, but not for the public name now configured.
    OtherName,
    /// Two thirds of its lifetime have passed.
    Due,
    /// It has expired.
    Expired,
}

/// What to do about the certificate in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Now(Why),
    /// Nothing until then.
    At(SystemTime),
}

/// The rule: when the certificate `cert` must give way, for the public
/// name `name`, at `now`.
pub fn renewal(cert: &Issued, name: &str, now: SystemTime) -> Renewal {
    if cert.self_issued {
        return Renewal::Now(Why::SelfIssued);
    }
    let name = name.to_ascii_lowercase();
    if !cert.names.contains(&name) {
        return Renewal::Now(Why::OtherName);
    }
    if now >= cert.not_after {
        return Renewal::Now(Why::Expired);
    }
    let at = cert.renew_at();
    if now >= at {
        Renewal::Now(Why::Due)
    } else {
        Renewal::At(at)
    }
}

/// The pause before trying again after `failures` orders in a row
/// failed: a minute, doubling, at most six hours.
pub fn retry_in(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(60);
    const LONGEST: Duration = Duration::from_secs(6 * 3600);
    FIRST
        .checked_mul(1u32 << failures.saturating_sub(1).min(16))
        .map_or(LONGEST, |d| d.min(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn issued(days: u32) -> Issued {
        let start = SystemTime::UNIX_EPOCH + 20_000 * DAY;
        Issued {
            names: vec!["ferry.example.com".into()],
            not_before: start,
            not_after: start + DAY * days,
            self_issued: false,
        }
    }

    #[test]
    fn a_ninety_day_certificate_is_renewed_thirty_days_before_its_end() {
        let c = issued(90);
        let at = c.not_before + DAY * 60;
        assert_eq!(
            renewal(&c, "ferry.example.com", c.not_before),
            Renewal::At(at)
        );
        assert_eq!(
            renewal(&c, "ferry.example.com", at - Duration::from_secs(1)),
            Renewal::At(at)
        );
        assert_eq!(renewal(&c, "ferry.example.com", at), Renewal::Now(Why::Due));
        assert_eq!(
            renewal(&c, "FERRY.example.com", c.not_after),
            Renewal::Now(Why::Expired)
        );
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_in_proportion() {
        let mut c = issued(0);
        c.not_after = c.not_before + Duration::from_secs(90);
        assert_eq!(
            renewal(&c, "ferry.example.com", c.not_before),
            Renewal::At(c.not_before + Duration::from_secs(60))
        );
    }

    #[test]
    fn a_self_signed_or_misnamed_certificate_is_replaced_at_once() {
        let mut c = issued(90);
        assert_eq!(
            renewal(&c, "other.example.com", c.not_before),
            Renewal::Now(Why::OtherName)
        );
        c.self_issued = true;
        assert_eq!(
            renewal(&c, "ferry.example.com", c.not_before),
            Renewal::Now(Why::SelfIssued)
        );
    }

    #[test]
    fn failures_back_off_to_six_hours() {
        assert_eq!(retry_in(1), Duration::from_secs(60));
        assert_eq!(retry_in(2), Duration::from_secs(120));
        assert_eq!(retry_in(3), Duration::from_secs(240));
        assert_eq!(retry_in(40), Duration::from_secs(6 * 3600));
        assert_eq!(retry_in(0), Duration::from_secs(60));
    }

    #[test]
    fn reads_names_validity_and_issuer() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["Ferry.Example.com".into()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(1_707_776_000).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let read = Issued::read(cert.der()).unwrap();
        assert_eq!(read.names, vec!["ferry.example.com".to_owned()]);
        assert_eq!(
            read.not_before,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            read.not_after,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_707_776_000)
        );
        assert!(read.self_issued);
        assert!(Issued::read(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}

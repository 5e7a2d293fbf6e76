//! Settings the admin changes at run time (public address, port range,
//! SMTP, rates…), as text keyed by name. Typed access is the daemon's job;
//! the store keeps them durable.

use crate::db::{Optional, params};

use crate::{Database, Result};

impl Database {
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.conn()?
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn clear_setting(&self, key: &str) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM settings WHERE key = ?1", params![key])?;
        Ok(())
    }

    pub fn settings(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT key, value FROM settings ORDER BY key")?;
        let rows = stmt.query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn settings_round_trip() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            assert_eq!(s.setting("public_address").unwrap(), None);
            s.set_setting("public_address", "ferry.example.com")
                .unwrap();
            s.set_setting("public_address", "ferry2.example.com")
                .unwrap();
            assert_eq!(
                s.setting("public_address").unwrap().as_deref(),
                Some("ferry2.example.com")
            );
            s.clear_setting("public_address").unwrap();
            assert!(s.settings().unwrap().is_empty());
        }
    }
}

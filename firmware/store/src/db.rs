//! One SQL connection for every query of this crate, over SQLite or
//! PostgreSQL.
//!
//! The queries are written once, in the SQL both engines speak: numbered
//! placeholders (`?1`, which PostgreSQL receives as `$1`), integers for
//! flags and times, `INSERT … RETURNING id`, `ON CONFLICT`, and `CASE`
//! where SQLite would take a two-argument `max`. Values cross as a small
//! [`Value`] enum, so a query reads the same Rust types on both engines,
//! and every failure is classified here, where it arises ([`DbError`]):
//! a duplicate key is [`DbError::Duplicate`] on both, never a message to
//! parse.

use std::cell::RefCell;
use std::sync::MutexGuard;

use postgres::NoTls;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::{Result, StoreError};

/// A pooled PostgreSQL connection.
pub(crate) type PgConnection = r2d2::PooledConnection<PgManager>;

/// A PostgreSQL client with the statements it has prepared: a query the
/// crate runs again goes out as one round trip, without parsing and
/// planning it anew.
pub(crate) struct PgClient {
    client: postgres::Client,
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl PgClient {
    /// The prepared statement for `sql` (in `?N` form), prepared now if
    /// this connection has not seen it. The queries are the crate's own,
    /// so the cache holds a bounded set.
    fn statement(
        &mut self,
        sql: &str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&numbered(sql))?;
        self.prepared.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// Opens [`PgClient`]s for the pool.
pub(crate) struct PgManager {
    pub config: postgres::Config,
    /// TLS, when the URL asks for it (`sslmode=require`).
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgManager")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the pool could not open a connection, with every cause: the pool
/// keeps only the text of the last failure, and the driver's own text
/// ("error connecting to server") leaves out why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConnectError(String);

impl From<postgres::Error> for ConnectError {
    fn from(e: postgres::Error) -> Self {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        ConnectError(text)
    }
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgClient;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<PgClient, ConnectError> {
        let client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(NoTls)?,
        };
        Ok(PgClient {
            client,
            prepared: Default::default(),
        })
    }

    fn is_valid(&self, c: &mut PgClient) -> std::result::Result<(), ConnectError> {
        Ok(c.client.simple_query("").map(drop)?)
    }

    fn has_broken(&self, c: &mut PgClient) -> bool {
        c.client.is_closed()
    }
}

/// A failure of the database engine, classified where it arose.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(postgres::Error),
    /// No connection could be had from the pool (the server is down or
    /// every connection is busy for longer than the pool waits).
    #[error("no connection to PostgreSQL: {0}")]
    Pool(String),
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRow,
    /// A unique or primary key refused the row.
    #[error("a duplicate: {0}")]
    Duplicate(String),
    /// A foreign key, check or not-null constraint refused the change.
    #[error("a constraint refused the change: {0}")]
    Constraint(String),
    /// A column held a value of another type than the query reads.
    #[error("column {column}: {why}")]
    Column { column: usize, why: String },
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match &e {
            rusqlite::Error::QueryReturnedNoRows => DbError::NoRow,
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                {
                    DbError::Duplicate(e.to_string())
                } else {
                    DbError::Constraint(e.to_string())
                }
            }
            _ => DbError::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        use postgres::error::SqlState;
        match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => DbError::Duplicate(pg_message(&e)),
            Some(c)
                if *c == SqlState::FOREIGN_KEY_VIOLATION
                    || *c == SqlState::CHECK_VIOLATION
                    || *c == SqlState::NOT_NULL_VIOLATION
                    || *c == SqlState::RESTRICT_VIOLATION =>
            {
                DbError::Constraint(pg_message(&e))
            }
            _ => DbError::Postgres(e),
        }
    }
}

/// The server's own words, without the driver's "db error:" wrapping.
fn pg_message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.into())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database(e.into())
    }
}

/// A value on its way into or out of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a query may take as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_value!(i64, i32, u32, u16, u8, bool);

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// A query's parameters: `params![a, b]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),*] as &[&dyn $crate::db::ToValue]
    };
}
pub(crate) use params;

/// What a query may read from a column.
pub trait FromValue: Sized {
    /// `None` when the value is not one of this type.
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromValue for u16 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u16::try_from(i).ok())
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Option<Self> {
        Some(v.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result, read out of the engine.
#[derive(Debug)]
pub struct Row {
    values: Vec<Value>,
}

/// A column of a [`Row`], by position.
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl Row {
    /// Column `idx` as a `T`.
    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let column = idx.index();
        let v = self.values.get(column).ok_or_else(|| DbError::Column {
            column,
            why: format!("the row has {} columns", self.values.len()),
        })?;
        T::from_value(v).ok_or_else(|| {
            DbError::Column {
                column,
                why: format!("{v:?} is not a {}", std::any::type_name::<T>()),
            }
            .into()
        })
    }

    /// Every column, in order.
    pub fn values(&self) -> Vec<Value> {
        self.values.clone()
    }
}

/// `.optional()` on a query that may find nothing.
pub trait Optional<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> Optional<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::Database(DbError::NoRow)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Which engine a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        })
    }
}

/// A connection, held for one unit of work.
pub(crate) enum Conn<'a> {
    Sqlite(MutexGuard<'a, rusqlite::Connection>),
    /// Boxed: a pooled client is far larger than a lock guard.
    Postgres(Box<RefCell<PgConnection>>),
}

impl<'a> Conn<'a> {
    pub fn engine(&self) -> Engine {
        match self {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize> {
        let values = values(params);
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            Conn::Postgres(c) => {
                let mut c = c.borrow_mut();
                let statement = c.statement(sql)?;
                let n = c.client.execute(&statement, &pg_params(&values))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Runs a query; every row, each read by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let values = values(params);
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&sqlite_row(r, width)?)?);
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let mut c = c.borrow_mut();
                let statement = c.statement(sql)?;
                let rows = c.client.query(&statement, &pg_params(&values))?;
                drop(c);
                rows.iter().map(|r| f(&pg_row(r)?)).collect()
            }
        }
    }

    /// Runs a query that returns one row ([`DbError::NoRow`] when it
    /// returns none; see [`Optional`]).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        let values = values(params);
        let row = match self {
            // SQLite steps to the first row only.
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                rows.next()?.map(|r| sqlite_row(r, width)).transpose()?
            }
            // PostgreSQL's server sends every row of a plain query; the
            // queries that ask for one row return one.
            Conn::Postgres(c) => {
                let mut c = c.borrow_mut();
                let statement = c.statement(sql)?;
                let rows = c.client.query(&statement, &pg_params(&values))?;
                rows.first().map(pg_row).transpose()?
            }
        };
        f(&row.ok_or(DbError::NoRow)?)
    }

    /// A statement run several times in a unit of work.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_, 'a>> {
        Ok(Stmt {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// Runs statements with no parameters, one after another.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(c) => Ok(c.borrow_mut().client.batch_execute(sql)?),
        }
    }

    /// Begins a transaction: what it changes lands together at
    /// [`Tx::commit`], or not at all if it is dropped first.
    pub fn transaction(&mut self) -> Result<Tx<'_, 'a>> {
        self.execute_batch("BEGIN")?;
        Ok(Tx {
            conn: self,
            open: true,
        })
    }
}

/// A statement a unit of work runs several times (one per task, say).
pub(crate) struct Stmt<'c, 'a> {
    conn: &'c Conn<'a>,
    sql: String,
}

impl Stmt<'_, '_> {
    pub fn execute(&mut self, params: &[&dyn ToValue]) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }

    pub fn query_map<T>(
        &mut self,
        params: &[&dyn ToValue],
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.conn.query_map(&self.sql, params, f)
    }

    pub fn query_row<T>(
        &mut self,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }
}

/// An open transaction (see [`Conn::transaction`]).
pub(crate) struct Tx<'c, 'a> {
    conn: &'c Conn<'a>,
    open: bool,
}

impl<'a> std::ops::Deref for Tx<'_, 'a> {
    type Target = Conn<'a>;
    fn deref(&self) -> &Conn<'a> {
        self.conn
    }
}

impl Tx<'_, '_> {
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.execute_batch("COMMIT")
    }
}

impl Drop for Tx<'_, '_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing can be returned from a drop. A rollback that fails
            // leaves a connection that cannot talk to its server: SQLite
            // then fails its next statement, and the pool does not hand
            // out a PostgreSQL connection that is closed.
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                log::error!("a transaction could not be rolled back: {e}");
            }
        }
    }
}

fn values(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

fn sqlite_row(r: &rusqlite::Row<'_>, width: usize) -> Result<Row> {
    use rusqlite::types::ValueRef;
    let values = (0..width)
        .map(|i| {
            Ok(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Row { values })
}

fn pg_row(r: &postgres::Row) -> Result<Row> {
    let values = r
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| -> Result<Value> {
            let ty = c.type_();
            let v = if *ty == Type::VOID {
                None
            } else if *ty == Type::INT8 {
                r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
            } else if *ty == Type::INT4 {
                r.try_get::<_, Option<i32>>(i)?
                    .map(|v| Value::Int(v.into()))
            } else if *ty == Type::INT2 {
                r.try_get::<_, Option<i16>>(i)?
                    .map(|v| Value::Int(v.into()))
            } else if *ty == Type::BOOL {
                r.try_get::<_, Option<bool>>(i)?
                    .map(|v| Value::Int(v.into()))
            } else if *ty == Type::FLOAT8 {
                r.try_get::<_, Option<f64>>(i)?.map(Value::Real)
            } else if *ty == Type::FLOAT4 {
                r.try_get::<_, Option<f32>>(i)?
                    .map(|v| Value::Real(v.into()))
            } else if *ty == Type::BYTEA {
                r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
            } else if *ty == Type::NUMERIC {
                // sum() over BIGINT is NUMERIC in PostgreSQL: the query
                // casts it back (`CAST(sum(x) AS BIGINT)`).
                return Err(DbError::Column {
                    column: i,
                    why: "a NUMERIC column: cast it to BIGINT in the query".into(),
                }
                .into());
            } else {
                // TEXT, VARCHAR, CITEXT, NAME.
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            };
            Ok(v.unwrap_or(Value::Null))
        })
        .collect::<Result<_>>()?;
    Ok(Row { values })
}

fn pg_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// The query with SQLite's `?N` placeholders written as PostgreSQL's
/// `$N` (outside quoted text).
pub(crate) fn numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return sql.into();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            c => out.push(c),
        }
    }
    out.into()
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// PostgreSQL decides each parameter's type from the query; the value
/// is written as that type (an integer as BIGINT, INTEGER or BOOLEAN).
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => {
                if *ty == Type::INT8 {
                    i.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*i != 0).to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*i as f64).to_sql(ty, out)
                } else {
                    Err(format!("an integer for a {ty} parameter").into())
                }
            }
            Value::Real(f) => {
                if *ty == Type::FLOAT8 {
                    f.to_sql(ty, out)
                } else {
                    Err(format!("a real number for a {ty} parameter").into())
                }
            }
            Value::Text(s) => {
                if [Type::INT8, Type::INT4, Type::INT2, Type::BOOL, Type::BYTEA].contains(ty) {
                    Err(format!("text for a {ty} parameter").into())
                } else {
                    s.as_str().to_sql(ty, out)
                }
            }
            Value::Blob(b) => {
                if *ty == Type::BYTEA {
                    b.as_slice().to_sql(ty, out)
                } else {
                    Err(format!("bytes for a {ty} parameter").into())
                }
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_quotes() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?1 AND c = '?' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d = $12"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn a_row_reads_typed_columns_and_says_which_one_is_wrong() {
        let row = Row {
            values: vec![Value::Int(1), Value::Null, Value::Text("x".into())],
        };
        assert!(row.get::<_, bool>(0).unwrap());
        assert_eq!(row.get::<_, Option<i64>>(1).unwrap(), None);
        assert_eq!(row.get::<_, String>(2).unwrap(), "x");
        let e = row.get::<_, i64>(2).unwrap_err();
        assert!(
            matches!(e, StoreError::Database(DbError::Column { column: 2, .. })),
            "{e}"
        );
        assert!(row.get::<_, i64>(3).is_err());
    }
}

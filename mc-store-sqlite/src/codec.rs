//! Conversions between domain values and SQLite columns.
//!
//! Times are stored as INTEGER microseconds since the epoch, so they compare and sort
//! correctly in SQL and round-trip exactly.

use std::str::FromStr;

use chrono::DateTime;
use mc_core::{SecretHash, StoreError, StoreResult, Timestamp};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

/// A timestamp as stored.
pub(crate) fn ts(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// An optional timestamp as stored.
pub(crate) fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(ts)
}

/// A `u64` counter as stored; values beyond `i64::MAX` saturate (they can only be bounds).
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// JSON text of a value.
pub(crate) fn json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::backend("cannot encode JSON column", e))
}

/// Typed column access with errors that name the column.
pub(crate) trait RowExt {
    fn uuid(&self, col: &str) -> StoreResult<Uuid>;
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>>;
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn time(&self, col: &str) -> StoreResult<Timestamp>;
    fn opt_time(&self, col: &str) -> StoreResult<Option<Timestamp>>;
    fn flag(&self, col: &str) -> StoreResult<bool>;
    fn count(&self, col: &str) -> StoreResult<u64>;
    fn opt_count(&self, col: &str) -> StoreResult<Option<u64>>;
    fn hash(&self, col: &str) -> StoreResult<SecretHash>;
    fn parsed<T: FromStr>(&self, col: &str) -> StoreResult<T>
    where
        T::Err: std::fmt::Display;
    fn json<T: DeserializeOwned>(&self, col: &str) -> StoreResult<T>;
}

fn decode(col: &str, err: sqlx::Error) -> StoreError {
    StoreError::backend(format!("cannot decode column '{col}'"), err)
}

fn micros(col: &str, v: i64) -> StoreResult<Timestamp> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::corrupt(format!("column '{col}' holds an impossible time {v}")))
}

fn unsigned(col: &str, v: i64) -> StoreResult<u64> {
    u64::try_from(v)
        .map_err(|_| StoreError::corrupt(format!("column '{col}' holds a negative count {v}")))
}

impl RowExt for SqliteRow {
    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        self.try_get(col).map_err(|e| decode(col, e))
    }
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        self.try_get(col).map_err(|e| decode(col, e))
    }
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(|e| decode(col, e))
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(|e| decode(col, e))
    }
    fn time(&self, col: &str) -> StoreResult<Timestamp> {
        let v: i64 = self.try_get(col).map_err(|e| decode(col, e))?;
        micros(col, v)
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<Timestamp>> {
        let v: Option<i64> = self.try_get(col).map_err(|e| decode(col, e))?;
        v.map(|v| micros(col, v)).transpose()
    }
    fn flag(&self, col: &str) -> StoreResult<bool> {
        self.try_get(col).map_err(|e| decode(col, e))
    }
    fn count(&self, col: &str) -> StoreResult<u64> {
        let v: i64 = self.try_get(col).map_err(|e| decode(col, e))?;
        unsigned(col, v)
    }
    fn opt_count(&self, col: &str) -> StoreResult<Option<u64>> {
        let v: Option<i64> = self.try_get(col).map_err(|e| decode(col, e))?;
        v.map(|v| unsigned(col, v)).transpose()
    }
    fn hash(&self, col: &str) -> StoreResult<SecretHash> {
        let bytes: Vec<u8> = self.try_get(col).map_err(|e| decode(col, e))?;
        SecretHash::from_slice(&bytes)
            .ok_or_else(|| StoreError::corrupt(format!("column '{col}' is not a 32-byte hash")))
    }
    fn parsed<T: FromStr>(&self, col: &str) -> StoreResult<T>
    where
        T::Err: std::fmt::Display,
    {
        let text: String = self.try_get(col).map_err(|e| decode(col, e))?;
        text.parse().map_err(|e: T::Err| StoreError::corrupt(format!("column '{col}': {e}")))
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> StoreResult<T> {
        let text: String = self.try_get(col).map_err(|e| decode(col, e))?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::backend(format!("column '{col}' holds invalid JSON"), e))
    }
}

/// A `u32` from a stored count, refusing values that do not fit.
pub(crate) fn small(col: &str, v: u64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::corrupt(format!("column '{col}' is too large: {v}")))
}

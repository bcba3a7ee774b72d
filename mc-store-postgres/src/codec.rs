//! Conversions between domain values and PostgreSQL columns.

use std::str::FromStr;

use mc_core::{SecretHash, StoreError, StoreResult};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Row, Type};

/// A `u64` counter as stored; values beyond `i64::MAX` saturate (they can only be bounds).
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Typed column access with errors that name the column.
pub(crate) trait RowExt {
    fn col<'r, T: Decode<'r, Postgres> + Type<Postgres>>(&'r self, col: &str) -> StoreResult<T>;
    fn count(&self, col: &str) -> StoreResult<u64>;
    fn small(&self, col: &str) -> StoreResult<u32>;
    fn opt_small(&self, col: &str) -> StoreResult<Option<u32>>;
    fn hash(&self, col: &str) -> StoreResult<SecretHash>;
    fn parsed<T: FromStr>(&self, col: &str) -> StoreResult<T>
    where
        T::Err: std::fmt::Display;
    fn json<T: DeserializeOwned>(&self, col: &str) -> StoreResult<T>;
}

fn negative(col: &str, v: i64) -> StoreError {
    StoreError::corrupt(format!("column '{col}' holds a negative count {v}"))
}

impl RowExt for PgRow {
    fn col<'r, T: Decode<'r, Postgres> + Type<Postgres>>(&'r self, col: &str) -> StoreResult<T> {
        self.try_get(col)
            .map_err(|e| StoreError::backend(format!("cannot decode column '{col}'"), e))
    }
    fn count(&self, col: &str) -> StoreResult<u64> {
        let v: i64 = self.col(col)?;
        u64::try_from(v).map_err(|_| negative(col, v))
    }
    fn small(&self, col: &str) -> StoreResult<u32> {
        let v: i32 = self.col(col)?;
        u32::try_from(v).map_err(|_| negative(col, v.into()))
    }
    fn opt_small(&self, col: &str) -> StoreResult<Option<u32>> {
        let v: Option<i32> = self.col(col)?;
        v.map(|v| u32::try_from(v).map_err(|_| negative(col, v.into()))).transpose()
    }
    fn hash(&self, col: &str) -> StoreResult<SecretHash> {
        let bytes: Vec<u8> = self.col(col)?;
        SecretHash::from_slice(&bytes)
            .ok_or_else(|| StoreError::corrupt(format!("column '{col}' is not a 32-byte hash")))
    }
    fn parsed<T: FromStr>(&self, col: &str) -> StoreResult<T>
    where
        T::Err: std::fmt::Display,
    {
        let text: String = self.col(col)?;
        text.parse().map_err(|e: T::Err| StoreError::corrupt(format!("column '{col}': {e}")))
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> StoreResult<T> {
        let Json(value): Json<T> = self.col(col)?;
        Ok(value)
    }
}

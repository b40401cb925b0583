//! Reading columns from a SQLite or a PostgreSQL row through one interface,
//! so each store decodes its records once for both databases.
//!
//! Integers are 64-bit in both schemas (`INTEGER` in SQLite, `BIGINT` in
//! PostgreSQL); a flag is `INTEGER` 0/1 in SQLite and `BOOLEAN` in
//! PostgreSQL.

use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

/// Typed column access by name.
pub(crate) trait Cols {
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn text_opt(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn bytes_opt(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn int_opt(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! cols_via_try_get {
    () => {
        fn text(&self, col: &str) -> Result<String, sqlx::Error> {
            self.try_get(col)
        }
        fn text_opt(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
            self.try_get(col)
        }
        fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
            self.try_get(col)
        }
        fn bytes_opt(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
            self.try_get(col)
        }
        fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
            self.try_get(col)
        }
        fn int_opt(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
            self.try_get(col)
        }
    };
}

impl Cols for SqliteRow {
    cols_via_try_get!();
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.try_get::<i64, _>(col).map(|v| v != 0)
    }
}

impl Cols for PgRow {
    cols_via_try_get!();
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.try_get(col)
    }
}

//! Configuration errors with their place in the file.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A configuration error with its place in the file.
///
/// ```
/// let e = pay402_cli::config::ConfigError::new("a.toml", "x = 1\n", Some(0..1), "x", "bad");
/// assert_eq!(e.to_string(), "a.toml:1:1: x: bad");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column in characters (0 when unknown).
    pub column: usize,
    /// The key path, e.g. `services[0].upstream` (empty for the whole file).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at byte range `span` of `source` (the file's text).
    ///
    /// ```
    /// let e = pay402_cli::config::ConfigError::new("a.toml", "a = 1\nb = 2\n", Some(6..7), "b", "no");
    /// assert_eq!((e.line, e.column), (2, 1));
    /// ```
    pub fn new(
        file: impl Into<PathBuf>,
        source: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = span.map_or((0, 0), |s| line_column(source, s.start));
        ConfigError {
            file: file.into(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

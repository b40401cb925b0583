//! Real test peers for pay402. Work in progress.

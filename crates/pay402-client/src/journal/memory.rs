//! [`MemoryJournal`]: the journal in memory.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use pay402_core::offer::Rail;

use super::{JournalError, JournalRecord, JournalStore, Query, RequestKey, Step, StoredToken};

/// A journal held in memory (lost when the process ends): for tests and
/// short-lived programs. Every method runs under one lock.
///
/// ```
/// use pay402_client::journal::{Journal, MemoryJournal};
/// let j = Journal::from_store(std::sync::Arc::new(MemoryJournal::new()), "memory");
/// # let _ = j;
/// ```
#[derive(Debug, Default)]
pub struct MemoryJournal {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    records: Vec<JournalRecord>,
    tokens: Vec<StoredToken>,
}

impl MemoryJournal {
    /// An empty journal.
    ///
    /// ```
    /// let j = pay402_client::journal::MemoryJournal::new();
    /// # let _ = j;
    /// ```
    pub fn new() -> MemoryJournal {
        MemoryJournal::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl JournalStore for MemoryJournal {
    async fn insert(&self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut t = self.lock();
        if t.records.iter().any(|r| r.id == record.id) {
            return Err(JournalError::Unavailable(format!(
                "entry {} exists",
                record.id
            )));
        }
        t.records.push(record.clone());
        Ok(())
    }

    async fn update(&self, id: &str, step: &Step) -> Result<(), JournalError> {
        let mut t = self.lock();
        let r = t
            .records
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| JournalError::NotFound(id.chars().take(64).collect()))?;
        r.state = step.state;
        r.updated_ms = step.at_ms;
        if let Some(p) = &step.proof {
            r.proof = Some(p.clone());
        }
        if let Some(p) = &step.proof_id {
            r.proof_id = Some(p.clone());
        }
        if let Some(s) = step.status {
            r.status = Some(s);
        }
        if let Some(d) = &step.detail {
            r.detail = Some(d.clone());
        }
        if let Some(c) = step.counted {
            r.counted = c;
        }
        Ok(())
    }

    async fn open_for(&self, key: &RequestKey) -> Result<Option<JournalRecord>, JournalError> {
        let t = self.lock();
        Ok(t.records
            .iter()
            .rev()
            .find(|r| &r.key == key && r.state.is_open())
            .cloned())
    }

    async fn get(&self, id: &str) -> Result<Option<JournalRecord>, JournalError> {
        Ok(self.lock().records.iter().find(|r| r.id == id).cloned())
    }

    async fn list(&self, query: &Query) -> Result<Vec<JournalRecord>, JournalError> {
        let t = self.lock();
        Ok(t.records
            .iter()
            .rev()
            .filter(|r| query.origin.as_ref().is_none_or(|o| &r.key.origin == o))
            .filter(|r| query.since_ms.is_none_or(|s| r.created_ms >= s))
            .filter(|r| !query.counted_only || r.counted)
            .filter(|r| !query.open_only || r.state.is_open())
            .take(query.limit.min(super::MAX_LIST))
            .cloned()
            .collect())
    }

    async fn put_token(&self, token: &StoredToken) -> Result<(), JournalError> {
        let mut t = self.lock();
        t.tokens.retain(|k| {
            !(k.origin == token.origin && k.scope == token.scope && k.rail == token.rail)
        });
        t.tokens.push(token.clone());
        Ok(())
    }

    async fn tokens(&self, origin: &str, scope: &str) -> Result<Vec<StoredToken>, JournalError> {
        let t = self.lock();
        Ok(t.tokens
            .iter()
            .rev()
            .filter(|k| k.origin == origin && k.scope == scope)
            .cloned()
            .collect())
    }

    async fn remove_token(
        &self,
        origin: &str,
        scope: &str,
        rail: Rail,
        credential: &str,
    ) -> Result<(), JournalError> {
        self.lock().tokens.retain(|k| {
            !(k.origin == origin
                && k.scope == scope
                && k.rail == rail
                && k.credential == credential)
        });
        Ok(())
    }
}

//! Aperture's YAML read key by key: every key taken is accounted for, the
//! rest reported.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::{ApertureError, err};

/// A YAML mapping being read key by key; the keys not taken are reported.
pub(crate) struct Obj {
    pub(crate) path: String,
    pub(crate) map: BTreeMap<String, Value>,
}

impl Obj {
    pub(crate) fn new(path: &str, v: Value) -> Result<Obj, ApertureError> {
        let Value::Mapping(m) = v else {
            return Err(err(path, "not a mapping"));
        };
        let mut map = BTreeMap::new();
        for (k, v) in m {
            let Value::String(k) = k else {
                return Err(err(path, "a key is not a string"));
            };
            map.insert(k, v);
        }
        Ok(Obj {
            path: path.to_owned(),
            map,
        })
    }

    pub(crate) fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub(crate) fn take(&mut self, k: &str) -> Option<Value> {
        self.map.remove(k).filter(|v| !v.is_null())
    }

    /// A scalar as text (Go's YAML reads numbers into string fields too).
    pub(crate) fn str(&mut self, k: &str) -> Result<Option<String>, ApertureError> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(err(&self.key(k), "not a string")),
        }
    }

    pub(crate) fn bool(&mut self, k: &str) -> Result<bool, ApertureError> {
        match self.take(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(err(&self.key(k), "not true or false")),
        }
    }

    pub(crate) fn int(&mut self, k: &str) -> Result<Option<i64>, ApertureError> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| err(&self.key(k), "not an integer")),
            Some(_) => Err(err(&self.key(k), "not an integer")),
        }
    }

    pub(crate) fn obj(&mut self, k: &str) -> Result<Option<Obj>, ApertureError> {
        let key = self.key(k);
        self.take(k).map(|v| Obj::new(&key, v)).transpose()
    }

    pub(crate) fn list(&mut self, k: &str) -> Result<Vec<Value>, ApertureError> {
        match self.take(k) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(s)) => Ok(s),
            Some(_) => Err(err(&self.key(k), "not a list")),
        }
    }

    pub(crate) fn str_list(&mut self, k: &str) -> Result<Vec<String>, ApertureError> {
        let key = self.key(k);
        self.list(k)?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(err(&key, "an entry is not a string")),
            })
            .collect()
    }

    /// A mapping of scalars, as text, in key order.
    pub(crate) fn str_map(&mut self, k: &str) -> Result<Vec<(String, String)>, ApertureError> {
        let Some(mut o) = self.obj(k)? else {
            return Ok(Vec::new());
        };
        let keys: Vec<String> = o.map.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            let v = o.str(&key)?.unwrap_or_default();
            out.push((key, v));
        }
        Ok(out)
    }

    /// Notes every key not taken: `what` says what became of it.
    pub(crate) fn rest(self, notes: &mut Vec<String>, what: &str) {
        for k in self.map.keys() {
            notes.push(format!("{}: {what}", self.key(k)));
        }
    }

    /// Ignores the listed keys, with `why` as their note.
    pub(crate) fn ignore(&mut self, notes: &mut Vec<String>, keys: &[&str], why: &str) {
        for k in keys {
            if self.take(k).is_some() {
                notes.push(format!("{}: ignored ({why})", self.key(k)));
            }
        }
    }
}

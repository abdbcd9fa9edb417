//! [`Secret`]: a configured key or token that never reaches a log by accident.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret value (key, token): shown as `***` by `Debug`, so that it never reaches a log by
/// accident. Serialized as the plain string (configuration files hold it as such).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; use it, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `***` for a set secret, empty for an unset one.
    pub(super) fn redacted(&self) -> Self {
        if self.is_empty() {
            Self::default()
        } else {
            Self("***".to_owned())
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "\"\"" } else { "***" })
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

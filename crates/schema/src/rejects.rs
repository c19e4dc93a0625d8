//! The rejects topic's wire format (`<topic>.rejects`, `schemas/README.md`): one JSON message
//! per rejected row, keyed by the upload id. Written by the producer (and the watcher through
//! it) in the upload's transaction, read by the consumer into `upload_rejects`; defined once
//! here so both sides agree.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A rejected row of an upload: where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectRecord<'a> {
    pub upload_id: Cow<'a, str>,
    /// The row's line in the file (1 is the header's for CSV).
    pub line: u64,
    /// The column at fault, when one is.
    pub column: Option<Cow<'a, str>>,
    pub reason: Cow<'a, str>,
}

impl RejectRecord<'_> {
    /// The message's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reject record serialises")
    }

    /// A message's bytes as an owned record.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<RejectRecord<'static>> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reject_reads_back_as_written_and_keeps_the_documented_field_names() {
        let reject = RejectRecord {
            upload_id: "u-1".into(),
            line: 7,
            column: Some("game_id".into()),
            reason: "not a number".into(),
        };
        let bytes = reject.to_json();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"upload_id":"u-1","line":7,"column":"game_id","reason":"not a number"}"#
        );
        assert_eq!(RejectRecord::from_json(&bytes).unwrap(), reject);
        let without_column = br#"{"upload_id":"u-1","line":2,"column":null,"reason":"x"}"#;
        assert_eq!(
            RejectRecord::from_json(without_column).unwrap().column,
            None
        );
    }
}

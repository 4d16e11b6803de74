//! The one encoding of stored records: a version byte, then bincode 1.3 with
//! one fixed options set. A newer hookd decodes every older version.

use crate::error::{Error, Result};
use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// The version byte written in front of every record today.
pub const RECORD_VERSION: u8 = 1;

/// Records are small; this only stops a corrupt length from allocating wildly.
const LIMIT: u64 = 16 << 20;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(LIMIT)
        .reject_trailing_bytes()
}

/// Encodes a record with its version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    options()
        .serialize_into(&mut out, value)
        .expect("stored records always encode");
    out
}

/// Decodes a record written by this or an older hookd; `what` names it in errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            options().deserialize(body).map_err(|source| Error::Decode {
                what: what.to_string(),
                source,
            })
        }
        Some((v, _)) => Err(Error::Decode {
            what: what.to_string(),
            source: Box::new(bincode::ErrorKind::Custom(format!(
                "record version {v} is newer than this hookd understands ({RECORD_VERSION})"
            ))),
        }),
        None => Err(Error::Decode {
            what: what.to_string(),
            source: Box::new(bincode::ErrorKind::Custom("empty record".into())),
        }),
    }
}

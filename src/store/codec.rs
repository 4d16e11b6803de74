//! The one encoding of stored records: a version byte, then bincode 1.3 with
//! one fixed options set. A newer hookd decodes every older version.

use crate::error::{Error, Result};
use crate::model::Event;
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

/// The version byte of an event record that carries its data: the header's
/// length (u32), the header as a version-1 body, then the data as posted.
pub const EVENT_WITH_DATA: u8 = 2;

/// Encodes an event header, with its data inline if given (else the data
/// is in chunk records).
pub fn encode_event(event: &Event, data: Option<&[u8]>) -> Vec<u8> {
    let Some(data) = data else {
        return encode(event);
    };
    let header = options()
        .serialize(event)
        .expect("stored records always encode");
    let mut out = Vec::with_capacity(5 + header.len() + data.len());
    out.push(EVENT_WITH_DATA);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// Decodes an event record: its header, and its data if it is inline.
pub fn decode_event(bytes: &[u8]) -> Result<(Event, Option<&[u8]>)> {
    let Some((&EVENT_WITH_DATA, rest)) = bytes.split_first() else {
        return Ok((decode(bytes, "event")?, None));
    };
    let damaged = |why: &str| Error::Decode {
        what: "event".into(),
        source: Box::new(bincode::ErrorKind::Custom(why.into())),
    };
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| damaged("header length cut short"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(damaged("header cut short"));
    }
    let (header, data) = rest.split_at(len);
    let event = options()
        .deserialize(header)
        .map_err(|source| Error::Decode {
            what: "event".into(),
            source,
        })?;
    Ok((event, Some(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Event {
        Event {
            id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            tenant: None,
            ordering_key: Some("k".into()),
            received_at: 1_700_000_000_000,
            data_len: 7,
            fanned_out: 2,
            deliveries: vec![3, 4],
        }
    }

    #[test]
    fn an_event_with_inline_data_reads_back_whole() {
        let bytes = encode_event(&header(), Some(b"{\"a\":1}"));
        assert_eq!(bytes[0], EVENT_WITH_DATA);
        let (event, data) = decode_event(&bytes).unwrap();
        assert_eq!(event, header());
        assert_eq!(data, Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn an_event_written_before_inline_data_reads_as_header_only() {
        let bytes = encode(&header());
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(encode_event(&header(), None), bytes);
        let (event, data) = decode_event(&bytes).unwrap();
        assert_eq!((event, data), (header(), None));
    }

    #[test]
    fn a_cut_event_record_is_an_error_not_a_panic() {
        let bytes = encode_event(&header(), Some(b"data"));
        for len in [1, 3, 5, 10] {
            let err = decode_event(&bytes[..len]).unwrap_err();
            assert!(err.to_string().contains("event"), "{err}");
        }
    }
}

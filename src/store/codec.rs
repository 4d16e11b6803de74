//! The one encoding of stored records: a version byte, then bincode 1.3 with
//! one fixed options set. A newer hookd decodes every older version.

use crate::error::{Error, Result};
use crate::model::{Attempt, Delivery, Event};
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

/// The version byte of a delivery record that carries its latest attempt:
/// the delivery, then the attempt, as version-1 bodies. Earlier attempts
/// are attempt records.
pub const DELIVERY_WITH_ATTEMPT: u8 = 2;

/// Encodes a delivery record, with its latest attempt if it has one.
pub fn encode_delivery(delivery: &Delivery, latest: Option<&Attempt>) -> Vec<u8> {
    let Some(attempt) = latest else {
        return encode(delivery);
    };
    let mut out = vec![DELIVERY_WITH_ATTEMPT];
    options()
        .serialize_into(&mut out, &(delivery, attempt))
        .expect("stored records always encode");
    out
}

/// Decodes a delivery record of any version: the delivery, and its latest
/// attempt if the record carries it.
pub fn decode_delivery(bytes: &[u8]) -> Result<(Delivery, Option<Attempt>)> {
    let Some((&DELIVERY_WITH_ATTEMPT, body)) = bytes.split_first() else {
        return Ok((decode(bytes, "delivery")?, None));
    };
    let (delivery, attempt) = options()
        .deserialize(body)
        .map_err(|source| Error::Decode {
            what: "delivery".into(),
            source,
        })?;
    Ok((delivery, Some(attempt)))
}

/// The version byte of an event record that carries its data: the header's
/// length (u32), the header as a version-1 body, then the data as posted.
/// Written before events recorded their fan-out subscriptions; still read.
pub const EVENT_WITH_DATA: u8 = 2;

/// The version byte of an event record today: a flags byte (`INLINE`), the
/// header's length (u32), the header (with `subs`), then the data as posted
/// if it is inline (else it is in chunk records).
pub const EVENT_WITH_SUBS: u8 = 3;

/// In a version-3 event record: the data follows the header.
const INLINE: u8 = 1;

/// The first byte of an event pack: the records of several events under
/// one key, each as (seq u64 BE, length u32 BE, record), in seq order.
/// No event record starts with it.
pub const EVENT_PACK: u8 = 4;

/// The value of a pack of (seq, event record) members, in seq order.
pub fn encode_pack(members: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let size = members
        .iter()
        .map(|(_, r)| PACK_ENTRY + r.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(1 + size);
    out.push(EVENT_PACK);
    for (seq, record) in members {
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// What a pack adds to each member's record: its seq and its length.
pub const PACK_ENTRY: usize = 12;

/// Whether a stored event value is a pack rather than one event's record.
pub fn is_pack(v: &[u8]) -> bool {
    v.first() == Some(&EVENT_PACK)
}

/// The members of pack `v` in seq order, each as its seq and where its
/// record lies in `v`; nothing is copied or allocated.
pub fn pack_members(v: &[u8]) -> PackMembers<'_> {
    PackMembers { v, at: 1 }
}

/// See [`pack_members`].
pub struct PackMembers<'a> {
    v: &'a [u8],
    at: usize,
}

impl Iterator for PackMembers<'_> {
    type Item = Result<(u64, std::ops::Range<usize>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.v.len() {
            return None;
        }
        let start = self.at + PACK_ENTRY;
        let member = self.v.get(self.at..start).and_then(|entry| {
            let seq = u64::from_be_bytes(entry[..8].try_into().unwrap());
            let len = u32::from_be_bytes(entry[8..].try_into().unwrap()) as usize;
            (self.v.len() - start >= len).then_some((seq, start..start + len))
        });
        match member {
            Some((seq, record)) => {
                self.at = record.end;
                Some(Ok((seq, record)))
            }
            None => {
                self.at = self.v.len();
                Some(Err(Error::Decode {
                    what: "event pack".into(),
                    source: Box::new(bincode::ErrorKind::Custom("a member is cut short".into())),
                }))
            }
        }
    }
}

/// The event header as versions 1 and 2 stored it: without `subs`.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct EventBeforeSubs {
    id: String,
    event_type: String,
    tenant: Option<String>,
    ordering_key: Option<String>,
    received_at: crate::model::Millis,
    data_len: u32,
    deliveries: Vec<u64>,
    fanned_out: u32,
}

impl From<EventBeforeSubs> for Event {
    fn from(e: EventBeforeSubs) -> Event {
        Event {
            id: e.id,
            event_type: e.event_type,
            tenant: e.tenant,
            ordering_key: e.ordering_key,
            received_at: e.received_at,
            data_len: e.data_len,
            deliveries: e.deliveries,
            fanned_out: e.fanned_out,
            subs: Vec::new(),
        }
    }
}

/// Encodes an event header, with its data inline if given (else the data
/// is in chunk records).
pub fn encode_event(event: &Event, data: Option<&[u8]>) -> Vec<u8> {
    let header = options()
        .serialize(event)
        .expect("stored records always encode");
    let data = data.unwrap_or_default();
    let mut out = Vec::with_capacity(6 + header.len() + data.len());
    out.push(EVENT_WITH_SUBS);
    out.push(if data.is_empty() { 0 } else { INLINE });
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// The inline data of an event record, given its length as `decode_event`
/// found it: every version writes that data last.
pub fn inline_data(record: &[u8], len: usize) -> &[u8] {
    &record[record.len() - len..]
}

/// Decodes an event record of any version: its header, and its data if it
/// is inline.
pub fn decode_event(bytes: &[u8]) -> Result<(Event, Option<&[u8]>)> {
    let damaged = |why: &str| Error::Decode {
        what: "event".into(),
        source: Box::new(bincode::ErrorKind::Custom(why.into())),
    };
    let header_and_data = |rest: &[u8]| -> Result<(usize, usize)> {
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| damaged("header length cut short"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(damaged("header cut short"));
        }
        Ok((4, 4 + len))
    };
    let undecodable = |source| Error::Decode {
        what: "event".into(),
        source,
    };
    match bytes.split_first() {
        Some((&EVENT_WITH_SUBS, rest)) => {
            let (&flags, rest) = rest
                .split_first()
                .ok_or_else(|| damaged("flags cut short"))?;
            let (from, to) = header_and_data(rest)?;
            let event = options()
                .deserialize(&rest[from..to])
                .map_err(undecodable)?;
            let data = (flags & INLINE != 0).then(|| &rest[to..]);
            Ok((event, data))
        }
        Some((&EVENT_WITH_DATA, rest)) => {
            let (from, to) = header_and_data(rest)?;
            let event: EventBeforeSubs = options()
                .deserialize(&rest[from..to])
                .map_err(undecodable)?;
            Ok((event.into(), Some(&rest[to..])))
        }
        _ => Ok((decode::<EventBeforeSubs>(bytes, "event")?.into(), None)),
    }
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
            subs: vec![10, 11],
        }
    }

    /// `header()` as hookd stored it before events recorded their subscriptions.
    fn header_before_subs() -> EventBeforeSubs {
        let e = header();
        EventBeforeSubs {
            id: e.id,
            event_type: e.event_type,
            tenant: e.tenant,
            ordering_key: e.ordering_key,
            received_at: e.received_at,
            data_len: e.data_len,
            deliveries: e.deliveries,
            fanned_out: e.fanned_out,
        }
    }

    fn without_subs() -> Event {
        Event {
            subs: Vec::new(),
            ..header()
        }
    }

    #[test]
    fn an_event_reads_back_whole_with_its_data_inline_or_not() {
        let bytes = encode_event(&header(), Some(b"{\"a\":1}"));
        assert_eq!(bytes[0], EVENT_WITH_SUBS);
        let (event, data) = decode_event(&bytes).unwrap();
        assert_eq!(event, header());
        assert_eq!(data, Some(&b"{\"a\":1}"[..]));
        assert_eq!(inline_data(&bytes, 7), b"{\"a\":1}");

        let bytes = encode_event(&header(), None);
        let (event, data) = decode_event(&bytes).unwrap();
        assert_eq!((event, data), (header(), None));
    }

    #[test]
    fn an_event_written_before_inline_data_reads_as_header_only() {
        let bytes = encode(&header_before_subs());
        assert_eq!(bytes[0], RECORD_VERSION);
        let (event, data) = decode_event(&bytes).unwrap();
        assert_eq!((event, data), (without_subs(), None));
    }

    #[test]
    fn an_event_written_before_subscriptions_were_recorded_reads_with_its_data() {
        let header = options().serialize(&header_before_subs()).unwrap();
        let mut bytes = vec![EVENT_WITH_DATA];
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(b"{\"a\":1}");
        let (event, data) = decode_event(&bytes).unwrap();
        assert_eq!(event, without_subs());
        assert_eq!(data, Some(&b"{\"a\":1}"[..]));
        assert_eq!(inline_data(&bytes, 7), b"{\"a\":1}");
    }

    #[test]
    fn a_cut_event_record_is_an_error_not_a_panic() {
        let bytes = encode_event(&header(), Some(b"data"));
        for len in [1, 2, 4, 6, 10] {
            let err = decode_event(&bytes[..len]).unwrap_err();
            assert!(err.to_string().contains("event"), "{err}");
        }
    }

    #[test]
    fn a_delivery_reads_back_with_its_latest_attempt_or_without() {
        let delivery = Delivery::new(4, 2, 11, None, 1_700_000_000_000);
        let attempt = Attempt {
            no: 1,
            at: 1_700_000_000_005,
            status: Some(503),
            error: None,
            latency_ms: 5,
            response: b"busy".to_vec(),
        };
        let bytes = encode_delivery(&delivery, Some(&attempt));
        assert_eq!(bytes[0], DELIVERY_WITH_ATTEMPT);
        assert_eq!(
            decode_delivery(&bytes).unwrap(),
            (delivery.clone(), Some(attempt))
        );
        // Without one, the record is as version 1 wrote it.
        let bytes = encode_delivery(&delivery, None);
        assert_eq!(bytes, encode(&delivery));
        assert_eq!(decode_delivery(&bytes).unwrap(), (delivery, None));
        assert!(decode_delivery(&[DELIVERY_WITH_ATTEMPT, 1, 2]).is_err());
    }

    #[test]
    fn a_fresh_delivery_is_derived_only_from_the_fan_out() {
        let mut event = header();
        event.deliveries.push(9);
        let d = event.fresh_delivery(2, 4).unwrap();
        assert_eq!((d.id, d.event_seq, d.sub_key), (4, 2, 11));
        assert_eq!(d.next_at, event.received_at);
        assert_eq!(d.lane.as_deref(), Some("k"));
        // A redelivery always has its own record; so has an older event's fan-out.
        assert!(event.fresh_delivery(2, 9).is_none());
        assert!(without_subs().fresh_delivery(2, 4).is_none());
    }
}

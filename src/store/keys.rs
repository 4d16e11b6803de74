//! Key layouts of the one data tree. Fixed-width big-endian numbers, so byte
//! order is number order and range scans walk time and sequence order.

/// Subscriptions: `S` ‖ sub key.
pub const SUB: u8 = b'S';
/// Event records: `E` ‖ event seq, or a pack of several under the first's
/// seq (see `store::events`).
pub const EVENT: u8 = b'E';
/// Event data chunks: `C` ‖ event seq ‖ chunk no (u16).
pub const CHUNK: u8 = b'C';
/// Idempotency: `I` ‖ event id bytes → event seq.
pub const IDEM: u8 = b'I';
/// Deliveries: `D` ‖ delivery id.
pub const DELIVERY: u8 = b'D';
/// Due index of open deliveries: `Q` ‖ sub key ‖ next_at ‖ delivery id →
/// the event key (u64) ingest wrote its event under, else nothing: where to
/// find a delivery that has no record yet without a search. Or a due group: the
/// unordered deliveries one ingest round opened for one subscription, under
/// an id of its own that no delivery has ([`due_group`]); the group loses a member per attempt
/// that closes or moves it, and its key goes with the last.
pub const DUE: u8 = b'Q';
/// Attempts: `A` ‖ delivery id ‖ attempt no (u32), all but the latest, which
/// its delivery record keeps.
pub const ATTEMPT: u8 = b'A';
/// Ordered lanes: `L` ‖ sub key ‖ key length (u8) ‖ ordering key ‖ delivery id → ().
/// Every open keyed delivery has one; only a lane's head is in the due index.
pub const LANE: u8 = b'L';

/// Event data is stored in chunks this large at most. Not only each value
/// but each page must stay below sled's blob threshold (~128 KiB), because
/// sled never fsyncs blob files: a leaf is rewritten whole with up to 17
/// keys (it splits past 16), and 17 chunks of 32 KiB made every leaf of
/// chunks a blob, which a power cut turned into a store sled cannot open.
/// 17 × 4 KiB keeps a leaf of chunks near half the threshold. Chunk numbers
/// are u16, so an event holds at most 256 MiB of data.
pub const CHUNK_SIZE: usize = 4 * 1024;

/// Data up to this size is stored inside its event record: one key instead
/// of two, and one read instead of a scan. The record, with a header of a
/// few hundred bytes, stays within the page bound `CHUNK_SIZE` keeps.
pub const INLINE_DATA: usize = 2 * 1024;

/// `tag ‖ n`.
pub fn with_u64(tag: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `C ‖ seq ‖ chunk`.
pub fn chunk(seq: u64, no: u16) -> [u8; 11] {
    let mut k = [0u8; 11];
    k[..9].copy_from_slice(&with_u64(CHUNK, seq));
    k[9..].copy_from_slice(&no.to_be_bytes());
    k
}

/// The id of an event posted without one: `evt_` and a ULID of the time
/// and, in its last 64 bits, the event's seq mixed with the store's random
/// `salt` ([`mix`]), so that finding it by id needs no `I` key. The 16 bits
/// between are a tag of the salt's, so a client's own ULID ids are seldom
/// taken for made-up ones (and looked up for nothing). The salt keeps the
/// seq out of sight, and two stores from making the same ids.
pub fn made_up_id(seq: u64, now_ms: u64, salt: u64) -> String {
    let random = u128::from(tag(salt)) << 64 | u128::from(mix(seq, salt));
    format!("evt_{}", ulid::Ulid::from_parts(now_ms, random))
}

/// The seq a made-up id says, if `id` has the form of one. Any client may
/// post an id of that form: the event under the seq must carry the id.
pub fn made_up_seq(id: &str, salt: u64) -> Option<u64> {
    let random = ulid::Ulid::from_string(id.strip_prefix("evt_")?)
        .ok()?
        .random();
    ((random >> 64) as u16 == tag(salt)).then(|| unmix(random as u64, salt))
}

/// The 16 bits of a made-up id between its time and its mixed seq.
fn tag(salt: u64) -> u16 {
    (salt >> 48) as u16
}

const MIX_A: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX_B: u64 = 0xbf58_476d_1ce4_e5b9;

/// A permutation of the u64s, one per salt: xor, then multiplications by
/// odd constants and xor-shifts, each of which can be undone ([`unmix`]).
/// It hides, it does not encrypt.
pub fn mix(x: u64, salt: u64) -> u64 {
    let mut x = (x ^ salt).wrapping_mul(MIX_A);
    x ^= x >> 32;
    x = x.wrapping_mul(MIX_B);
    x ^ (x >> 29)
}

/// The inverse of [`mix`].
pub fn unmix(y: u64, salt: u64) -> u64 {
    let mut x = y ^ (y >> 29) ^ (y >> 58);
    x = x.wrapping_mul(inverse(MIX_B));
    x ^= x >> 32;
    x.wrapping_mul(inverse(MIX_A)) ^ salt
}

/// The inverse of odd `a` modulo 2^64 (Newton's iteration: each step
/// doubles the correct low bits, from 3).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// `I ‖ id`.
pub fn idem(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(IDEM);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `Q ‖ sub ‖ next_at ‖ delivery`.
pub fn due(sub: u64, next_at: u64, delivery: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = DUE;
    k[1..9].copy_from_slice(&sub.to_be_bytes());
    k[9..17].copy_from_slice(&next_at.to_be_bytes());
    k[17..].copy_from_slice(&delivery.to_be_bytes());
    k
}

/// `Q ‖ sub`: the prefix of one subscription's due entries.
pub fn due_prefix(sub: u64) -> [u8; 9] {
    with_u64(DUE, sub)
}

/// Splits a due key into (sub, next_at, delivery).
pub fn parse_due(k: &[u8]) -> Option<(u64, u64, u64)> {
    if k.len() != 25 || k[0] != DUE {
        return None;
    }
    Some((be(&k[1..9]), be(&k[9..17]), be(&k[17..25])))
}

/// `Q ‖ sub ‖ next_at`: the prefix of one subscription's due entries at one time.
pub fn due_at_prefix(sub: u64, next_at: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k.copy_from_slice(&due(sub, next_at, 0)[..17]);
    k
}

/// The first byte of a due group's value. A group is `DUE_GROUP` and then
/// (delivery id, event seq) per member, 1 + 16n bytes; a due key of one
/// delivery holds 0 or 8, so the length tells them apart.
const DUE_GROUP: u8 = b'G';

/// Members a due group holds at most: its value stays within `CHUNK_SIZE`,
/// so a leaf of groups stays below sled's blob threshold as a leaf of chunks does.
pub const DUE_GROUP_MAX: usize = (CHUNK_SIZE - 1) / 16;

/// The value of a due group of (delivery id, event seq) members, in id order.
pub fn due_group(members: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 16 * members.len());
    v.push(DUE_GROUP);
    for (delivery, seq) in members {
        v.extend_from_slice(&delivery.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
    }
    v
}

/// Whether a due key's value is a group rather than one delivery's.
pub fn is_due_group(v: &[u8]) -> bool {
    v.first() == Some(&DUE_GROUP) && v.len() % 16 == 1
}

/// A due group's (delivery id, event seq) members; none if `v` is not a group.
pub fn group_members(v: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let members = if is_due_group(v) { &v[1..] } else { &[][..] };
    members.chunks_exact(16).map(|m| (be(&m[..8]), be(&m[8..])))
}

/// The deliveries a due key makes due, each with its event's seq where the
/// key knows it: the key's own delivery, or a group's members.
pub fn due_members(key_delivery: u64, v: &[u8]) -> impl Iterator<Item = (u64, Option<u64>)> + '_ {
    let one = (!is_due_group(v)).then(|| (key_delivery, (v.len() == 8).then(|| be(v))));
    one.into_iter()
        .chain(group_members(v).map(|(id, seq)| (id, Some(seq))))
}

/// `L ‖ sub ‖ len ‖ key`: the prefix of one ordered lane.
pub fn lane_prefix(sub: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + key.len() + 8);
    k.extend_from_slice(&with_u64(LANE, sub));
    k.push(key.len() as u8);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `L ‖ sub ‖ len ‖ key ‖ delivery`. Delivery ids grow, so a lane is in ingest order.
pub fn lane(sub: u64, key: &str, delivery: u64) -> Vec<u8> {
    let mut k = lane_prefix(sub, key);
    k.extend_from_slice(&delivery.to_be_bytes());
    k
}

/// The delivery id at the end of a lane key.
pub fn lane_delivery(k: &[u8]) -> Option<u64> {
    (k.len() >= 18).then(|| be(&k[k.len() - 8..]))
}

/// The (sub, key) part of a lane key, for telling lanes apart in a scan.
pub fn lane_of(k: &[u8]) -> &[u8] {
    &k[..k.len().saturating_sub(8)]
}

/// `A ‖ delivery ‖ no`.
pub fn attempt(delivery: u64, no: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..9].copy_from_slice(&with_u64(ATTEMPT, delivery));
    k[9..].copy_from_slice(&no.to_be_bytes());
    k
}

/// The number in the 8 bytes after a one-byte tag.
pub fn tail_u64(k: &[u8]) -> Option<u64> {
    (k.len() >= 9).then(|| be(&k[1..9]))
}

/// A big-endian u64 from exactly 8 bytes.
pub fn be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_id_says_its_seq_under_its_salt_and_nothing_else_does() {
        let salt = 0x5eed_1234_abcd_0042;
        for seq in [0, 1, 77, 2_000_000, u64::MAX] {
            let id = made_up_id(seq, 1_700_000_000_000, salt);
            assert_eq!(id.len(), 30, "{id}");
            assert_eq!(made_up_seq(&id, salt), Some(seq), "{id}");
            assert_ne!(made_up_seq(&id, salt ^ 1), Some(seq), "{id}");
        }
        assert_eq!(made_up_seq("evt_", salt), None);
        assert_eq!(made_up_seq("evt_0123456789", salt), None);
        assert_eq!(made_up_seq("order-17", salt), None);
        // A client's ULID with another tag is not taken for a made-up id.
        let other = u128::from(tag(salt) ^ 1) << 64 | u128::from(mix(77, salt));
        let client = format!("evt_{}", ulid::Ulid::from_parts(1_700_000_000_000, other));
        assert_eq!(made_up_seq(&client, salt), None);
        // Consecutive seqs do not show as consecutive.
        assert!(mix(1, salt).abs_diff(mix(2, salt)) > 1 << 32);
    }

    #[test]
    fn mix_is_undone_by_unmix() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for salt in [0, 1, u64::MAX, 0x5eed] {
            for _ in 0..10_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                assert_eq!(unmix(mix(x, salt), salt), x);
            }
        }
    }

    #[test]
    fn due_keys_sort_by_sub_then_time_then_id() {
        let a = due(1, 100, 9);
        let b = due(1, 200, 1);
        let c = due(2, 50, 1);
        assert!(a < b && b < c);
        assert_eq!(parse_due(&b), Some((1, 200, 1)));
        assert!(a.starts_with(&due_prefix(1)));
    }

    #[test]
    fn a_due_value_is_one_delivery_or_a_group() {
        let members = |key: u64, v: &[u8]| due_members(key, v).collect::<Vec<_>>();
        assert_eq!(members(5, &[]), vec![(5, None)]);
        // A seq whose first byte is the group tag is still one delivery's.
        let seq = u64::from_be_bytes([b'G', 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(members(5, &seq.to_be_bytes()), vec![(5, Some(seq))]);
        let group = due_group(&[(5, 40), (6, 40), (9, 41)]);
        assert!(is_due_group(&group));
        assert_eq!(
            members(5, &group),
            vec![(5, Some(40)), (6, Some(40)), (9, Some(41))]
        );
        // A group's key id is not one of its members.
        assert_eq!(members(5, &due_group(&[(9, 41)])), vec![(9, Some(41))]);
        assert!(due(1, 7, 3).starts_with(&due_at_prefix(1, 7)));
        assert!(!due(1, 8, 0).starts_with(&due_at_prefix(1, 7)));
    }

    #[test]
    fn lane_keys_keep_lanes_apart_and_in_order() {
        let a1 = lane(1, "a", 5);
        let a2 = lane(1, "a", 7);
        let ab = lane(1, "ab", 1);
        assert!(a1 < a2);
        assert!(a1.starts_with(&lane_prefix(1, "a")));
        assert!(!ab.starts_with(&lane_prefix(1, "a")));
        assert_eq!(lane_delivery(&a2), Some(7));
        assert_eq!(lane_of(&a1), lane_of(&a2));
    }
}

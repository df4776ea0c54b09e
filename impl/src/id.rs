//! Record identifiers: 12-byte object ids written as 24 lowercase hex digits, as the course's
//! MongoDB ids were.
//!
//! An id is `Copy` and never allocates. New ids are unique within a process (a counter) and
//! across processes with overwhelming probability (a per-process random part), and they sort
//! roughly by creation time (a leading timestamp), like MongoDB's `ObjectId`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A record id: 4 bytes of Unix seconds, 5 random bytes fixed per process, a 3-byte counter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id([u8; 12]);

/// The text given where an id was expected was not 24 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an id (24 hex digits): {0:?}")]
pub struct InvalidId(pub String);

impl Id {
    /// A fresh id, unique in this process (with `testkit`, the next id of the thread's
    /// [`script`], if one is running).
    pub fn new() -> Self {
        #[cfg(feature = "testkit")]
        if let Some(id) = script::next(Self::fresh) {
            return id;
        }
        Self::fresh()
    }

    fn fresh() -> Self {
        static PROCESS_PART: OnceLock<[u8; 5]> = OnceLock::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let process = PROCESS_PART.get_or_init(rand::random);
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as u32);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&seconds.to_be_bytes());
        bytes[4..9].copy_from_slice(process);
        bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        Self(bytes)
    }

    /// The id made of exactly these bytes (tests and replays that need predictable ids).
    pub const fn from_bytes(bytes: [u8; 12]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// A well-mixed 64-bit hash of the id (every bit of the id reaches every bit of the
    /// hash), for picking a shard and a bucket without a general-purpose hasher.
    pub fn mix(&self) -> u64 {
        let b = &self.0;
        let high = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let low = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as u64;
        // MurmurHash3's 64-bit finaliser over both halves.
        let mut x = high.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ low;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^ (x >> 33)
    }
}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal ids have equal bytes, hence equal mixes: consistent with `Eq`.
        state.write_u64(self.mix());
    }
}

/// Ids made on one thread, kept and handed out again: how the harness re-creates a task that
/// made ids (a new ticket's, a new order's) on a copy of its world, so the copy's task carries
/// the very ids the original did, as a deterministic replay must.
#[cfg(feature = "testkit")]
pub mod script {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::Id;

    /// One running script: the ids to hand out first, and every id handed out.
    struct Script {
        replay: VecDeque<Id>,
        made: Vec<Id>,
    }

    thread_local! {
        static RUNNING: RefCell<Option<Script>> = const { RefCell::new(None) };
    }

    /// Runs `work` with every [`Id::new`] on this thread answered first from `replay` (front
    /// first), then fresh; each id handed out is appended to `made`. What `replay` did not
    /// hand out is left in it.
    pub fn run<T>(replay: &mut VecDeque<Id>, made: &mut Vec<Id>, work: impl FnOnce() -> T) -> T {
        let script = Script {
            replay: std::mem::take(replay),
            made: std::mem::take(made),
        };
        let outer = RUNNING.with(|running| running.borrow_mut().replace(script));
        let output = work();
        let ran = RUNNING.with(|running| std::mem::replace(&mut *running.borrow_mut(), outer));
        if let Some(ran) = ran {
            *replay = ran.replay;
            *made = ran.made;
        }
        output
    }

    /// The running script's next id (from its replay, or `fresh`), or `None` if none runs.
    pub(super) fn next(fresh: fn() -> Id) -> Option<Id> {
        RUNNING.with(|running| {
            let mut running = running.borrow_mut();
            let script = running.as_mut()?;
            let id = script.replay.pop_front().unwrap_or_else(fresh);
            script.made.push(id);
            Some(id)
        })
    }
}

/// A map keyed by [`Id`] that hashes each key once, as its `mix()`, and not again.
pub type IdMap<V> = HashMap<Id, V, BuildHasherDefault<PremixedHasher>>;

/// A hasher for keys that are already well mixed ([`Id`] hashes as its `mix()`).
#[derive(Default)]
pub struct PremixedHasher(u64);

impl Hasher for PremixedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached by keys other than `Id`; fold them in FNV-1a style.
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, mixed: u64) {
        self.0 = mixed;
    }
}

impl Default for Id {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 24];
        for (i, byte) in self.0.iter().enumerate() {
            text[2 * i] = HEX[(byte >> 4) as usize];
            text[2 * i + 1] = HEX[(byte & 0x0f) as usize];
        }
        // Every byte written above is an ASCII hex digit.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

impl FromStr for Id {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.as_bytes();
        if digits.len() != 24 {
            return Err(InvalidId(text.to_owned()));
        }
        let mut bytes = [0u8; 12];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0]).ok_or_else(|| InvalidId(text.to_owned()))?;
            let low = hex_value(pair[1]).ok_or_else(|| InvalidId(text.to_owned()))?;
            bytes[i] = (high << 4) | low;
        }
        Ok(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id of 24 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Id, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "testkit")]
    #[test]
    fn a_script_hands_out_its_ids_again_then_fresh_ones_and_keeps_them_all() {
        use std::collections::VecDeque;
        let (mut replay, mut made) = (VecDeque::new(), Vec::new());
        let first = script::run(&mut replay, &mut made, || [Id::new(), Id::new()]);
        assert_eq!(
            made,
            first.to_vec(),
            "ids made while a script runs are kept"
        );
        assert_ne!(Id::new(), first[0], "outside a script, ids are fresh");
        let (mut replay, mut again) = (VecDeque::from(made.clone()), Vec::new());
        let (repeated, extra) = script::run(&mut replay, &mut again, || {
            ([Id::new(), Id::new()], Id::new())
        });
        assert_eq!(
            repeated, first,
            "a replay hands out the same ids in the same order"
        );
        assert!(
            !first.contains(&extra),
            "past the replay's end, ids are fresh"
        );
        assert_eq!(again, vec![first[0], first[1], extra]);
        assert!(replay.is_empty());
    }

    #[test]
    fn display_and_parse_round_trip() {
        let id = Id::new();
        let text = id.to_string();
        assert_eq!(text.len(), 24);
        assert_eq!(text.parse::<Id>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<Id>(), Ok(id));
    }

    #[test]
    fn new_ids_are_distinct() {
        let ids: std::collections::HashSet<Id> = (0..10_000).map(|_| Id::new()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!("abc".parse::<Id>().is_err());
        assert!("zzzzzzzzzzzzzzzzzzzzzzzz".parse::<Id>().is_err());
        assert!("0123456789abcdef012345678".parse::<Id>().is_err());
        assert!("0123456789abcdef0123456é".parse::<Id>().is_err());
    }

    #[test]
    fn serde_uses_the_hex_string() {
        let id = Id::from_bytes([0xab; 12]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"abababababababababababab\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Id>("42").is_err());
    }
}

//! The columnar layout of `wit/processor.wit`, written once for both sides of it: the host
//! (`weir-runtime`) encodes batches and decodes outputs, the Rust SDK (`weir-sdk`, in the guest)
//! does the reverse. No dependencies, so it builds for the host and for `wasm32-wasip2` alike.
//!
//! Byte strings are (offset, length) pairs into one `data` buffer, with [`ABSENT`] as the length
//! of a missing one. Numbers travel in packed little-endian columns (see [`column`]). Every
//! function is `#[inline]`: they run per record on both sides, across a crate boundary.

/// Marks an absent byte string (no key, or a tombstone) in a length column.
pub const ABSENT: u32 = u32::MAX;
/// Numbers per record in `batch.records`.
pub const RECORD_STRIDE: usize = 6;
/// Numbers per output in `outputs.records`.
pub const OUTPUT_STRIDE: usize = 8;
/// Numbers per header in `headers`.
pub const HEADER_STRIDE: usize = 4;

/// Appends `bytes` to `data` and returns where they are, as the WIT's (offset, length) pair, or
/// the absent marker for `None`.
#[inline]
pub fn append(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> [u32; 2] {
    match bytes {
        None => [0, ABSENT],
        Some(b) => {
            let at = data.len() as u32;
            data.extend_from_slice(b);
            [at, b.len() as u32]
        }
    }
}

/// The bytes at `at..at+len` of `data`; `None` when absent or out of bounds.
#[inline]
pub fn bytes(data: &[u8], at: u32, len: u32) -> Option<&[u8]> {
    if len == ABSENT {
        return None;
    }
    data.get(at as usize..(at as usize).checked_add(len as usize)?)
}

/// The WIT's packed number columns: `u32-column` (4 little-endian bytes each) and `s64-column`
/// (8 each).
pub mod column {
    #[inline]
    pub fn push_u32s(column: &mut Vec<u8>, values: &[u32]) {
        for v in values {
            column.extend_from_slice(&v.to_le_bytes());
        }
    }

    #[inline]
    pub fn push_i64(column: &mut Vec<u8>, value: i64) {
        column.extend_from_slice(&value.to_le_bytes());
    }

    /// The numbers in `bytes`, one whole row (numbers past its end stay 0).
    #[inline]
    pub fn row<const N: usize>(bytes: &[u8]) -> [u32; N] {
        let mut out = [0; N];
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        out
    }

    /// Row `row` of a u32 column with `N` numbers per row.
    #[inline]
    pub fn u32s<const N: usize>(column: &[u8], row: usize) -> Option<[u32; N]> {
        column.get(row * N * 4..(row + 1) * N * 4).map(self::row)
    }

    /// Number `i` of an s64 column.
    #[inline]
    pub fn i64_at(column: &[u8], i: usize) -> Option<i64> {
        let bytes = column.get(i * 8..i * 8 + 8)?;
        <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes)
    }

    #[cfg(test)]
    mod test {
        use super::*;

        #[test]
        fn numbers_come_back_as_they_went_in() {
            let (mut u, mut i) = (Vec::new(), Vec::new());
            push_u32s(&mut u, &[1, u32::MAX, 7, 8]);
            push_i64(&mut i, -1);
            push_i64(&mut i, 1_700_000_000_000);
            assert_eq!(u32s::<2>(&u, 1), Some([7, 8]));
            assert_eq!(u32s::<2>(&u, 2), None);
            assert_eq!((i64_at(&i, 0), i64_at(&i, 1), i64_at(&i, 2)), (Some(-1), Some(1_700_000_000_000), None));
        }
    }
}

/// Times (milliseconds since the epoch) as key bytes whose byte order is time order, for keys
/// that scan in time order: timers in the host's store, windows and join buffers in the SDK's.
pub mod time_key {
    /// `at` as 8 big-endian bytes with the sign bit flipped, so negative times sort first.
    #[inline]
    pub fn encode(at: i64) -> [u8; 8] {
        ((at as u64) ^ (1 << 63)).to_be_bytes()
    }

    /// The time that [`encode`] turned into `bytes`, if there are 8 of them.
    #[inline]
    pub fn decode(bytes: &[u8]) -> Option<i64> {
        Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
    }
}

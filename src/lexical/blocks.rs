//! Postings blocks: up to [`BLOCK`] postings of one term, keyed by (term, first row id),
//! each posting as LEB128 varints — the row id's distance from the previous one (0 for the
//! first, whose row id is the key), the term's frequency in the text field and in the
//! queries field, the row's text-field and queries-field lengths (FORMAT.md, "Lexical
//! index").

/// Postings a block holds at most.
pub(crate) const BLOCK: usize = 128;

/// A posting: row id and its packed value (see `store::unpack`).
pub(crate) type Entry = (u64, u128);

fn put(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn take(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or("block ends inside a number")?;
        *at += 1;
        x |= ((byte & 0x7f) as u64)
            .checked_shl(shift)
            .filter(|v| v >> shift == (byte & 0x7f) as u64)
            .ok_or("number out of range")?;
        if byte & 0x80 == 0 {
            return Ok(x);
        }
    }
    Err("number out of range".into())
}

/// Appends the encoding of `entries` (row ids ascending, at most [`BLOCK`]).
pub(crate) fn encode(entries: &[Entry], out: &mut Vec<u8>) {
    let mut prev = entries.first().map_or(0, |e| e.0);
    for &(rid, v) in entries {
        put(out, rid - prev);
        prev = rid;
        for i in 0..4 {
            put(out, (v >> (32 * i)) as u32 as u64);
        }
    }
}

/// Decodes the block keyed `first` into `out` (cleared first), checking that it is not
/// empty, starts at `first`, has strictly increasing row ids and at most [`BLOCK`] postings.
pub(crate) fn decode(first: u64, b: &[u8], out: &mut Vec<Entry>) -> Result<(), String> {
    out.clear();
    let mut at = 0;
    let mut rid = first;
    while at < b.len() {
        let delta = take(b, &mut at)?;
        if out.is_empty() != (delta == 0) {
            return Err("row ids do not increase from the key".into());
        }
        rid = rid.checked_add(delta).ok_or("row id out of range")?;
        let mut v = 0u128;
        for i in 0..4 {
            let x = take(b, &mut at)?;
            let x = u32::try_from(x).map_err(|_| "a count over 32 bits")?;
            v |= (x as u128) << (32 * i);
        }
        out.push((rid, v));
        if out.len() > BLOCK {
            return Err(format!("more than {BLOCK} postings"));
        }
    }
    if out.is_empty() {
        return Err("empty block".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_refuse_damage() {
        let entries: Vec<Entry> = (0..BLOCK as u64)
            .map(|i| {
                (
                    1000 + i * i,
                    (i as u128) << 96 | 7 << 64 | (i as u128 % 3) << 32 | 1,
                )
            })
            .collect();
        let mut b = Vec::new();
        encode(&entries, &mut b);
        let mut got = Vec::new();
        decode(1000, &b, &mut got).unwrap();
        assert_eq!(got, entries);
        assert!(
            decode(999, &b, &mut got).is_ok(),
            "the key only offsets the ids"
        );
        assert!(decode(1000, &b[..b.len() - 1], &mut got).is_err());
        assert!(decode(1000, &[], &mut got).is_err());
        let mut two = Vec::new();
        encode(&[(5, 1), (5, 1)][..1], &mut two);
        let again = two.clone();
        two.extend(&again); // a second posting with distance 0
        assert!(decode(5, &two, &mut got).is_err());
        let mut long = b.clone();
        encode(&[(1, 1)], &mut long); // distance 0 inside the block
        assert!(decode(1000, &long, &mut got).is_err());
        assert!(decode(1, &[0x80; 11], &mut got).is_err());
        assert!(decode(1, &[0, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0], &mut got).is_err());
    }
}

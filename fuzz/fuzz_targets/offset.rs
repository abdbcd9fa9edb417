//! Recovery offsets as clients send them (`Offset::new`, `to_number`, `to_pair`): no panic; an
//! offset that reads as a number or a pair is exactly the one `from_number` / `from_pair` writes
//! for it (so a forged offset cannot alias another entry's), and string order is numeric order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecast_core::Offset;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let offset = Offset::new(text.as_ref());
    assert_eq!(offset.is_start(), text.is_empty());
    if let Some(n) = offset.to_number() {
        assert_eq!(Offset::from_number(n), offset);
    }
    if let Some((a, b)) = offset.to_pair() {
        assert_eq!(Offset::from_pair(a, b), offset);
    }
    // The first 32 bytes as four numbers: two numbered offsets and two pairs keep their order.
    if data.len() >= 32 {
        let n = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&data[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        let (x, y) = (n(0), n(1));
        assert_eq!(
            Offset::from_number(x).cmp(&Offset::from_number(y)),
            x.cmp(&y)
        );
        assert_eq!(Offset::from_number(x).to_number(), Some(x));
        let (p, q) = ((x, n(2)), (y, n(3)));
        assert_eq!(
            Offset::from_pair(p.0, p.1).cmp(&Offset::from_pair(q.0, q.1)),
            p.cmp(&q)
        );
        assert_eq!(Offset::from_pair(p.0, p.1).to_pair(), Some(p));
        assert!(Offset::START < Offset::from_number(x));
    }
});

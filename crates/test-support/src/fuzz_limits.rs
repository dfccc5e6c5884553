//! The limits both framer fuzz targets (`fuzz/fuzz_targets/framer.rs` and
//! `framer_diff.rs`) pick from one input byte: tiny ones that the input can
//! trip, and the defaults.

use crate::xcr::xml::{Excess, Limits};

/// [`pick`], with bit 2 choosing to skip what is beyond the limits, and
/// bit 3 a token limit small enough to trip (the longest value of a stream
/// header, the streams namespace, is 32 bytes). Only `framer` uses it:
/// `framer_diff` compares with an oracle that knows no skipping.
pub fn pick_any(n: u8) -> Limits {
    let excess = if n & 4 != 0 {
        Excess::Skip
    } else {
        Excess::Fail
    };
    let l = pick(n);
    Limits {
        excess,
        max_token: if n & 8 != 0 { 40 } else { l.max_token },
        ..l
    }
}

pub fn pick(n: u8) -> Limits {
    match n % 4 {
        0 => Limits {
            max_stanza_size: 64,
            max_depth: 2,
            max_attributes: 1,
            ..Limits::new(64)
        },
        1 => Limits {
            max_stanza_size: 300,
            max_depth: 8,
            max_attributes: 4,
            ..Limits::new(300)
        },
        2 => Limits {
            max_stanza_size: 4096,
            max_depth: 64,
            max_attributes: 256,
            ..Limits::new(4096)
        },
        _ => Limits::new(524_288),
    }
}

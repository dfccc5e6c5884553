//! The limits both framer targets pick from one input byte: tiny ones that
//! the input can trip, and the defaults.
use xmpp_component_router::xml::Limits;

pub fn pick(n: u8) -> Limits {
    match n % 4 {
        0 => Limits {
            max_stanza_size: 64,
            max_depth: 2,
            max_attributes: 1,
        },
        1 => Limits {
            max_stanza_size: 300,
            max_depth: 8,
            max_attributes: 4,
        },
        2 => Limits {
            max_stanza_size: 4096,
            max_depth: 64,
            max_attributes: 256,
        },
        _ => Limits::new(524_288),
    }
}

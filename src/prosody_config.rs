//! Placeholder: filled by the prosody config parser work.

//! A tiny JSON writer: the load generator only ever emits one flat-ish
//! object per run, so a dependency is not worth it.

use std::fmt::{self, Write as _};

/// A JSON value.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f64),
    S(String),
    A(Vec<J>),
    O(Obj),
}

/// A JSON object that keeps insertion order.
#[derive(Debug, Clone, Default)]
pub struct Obj(Vec<(String, J)>);

impl Obj {
    pub fn new() -> Self {
        Obj(Vec::new())
    }

    /// Sets `key` (replacing an earlier value with the same key).
    pub fn set(&mut self, key: &str, v: impl Into<J>) -> &mut Self {
        let v = v.into();
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| k == key) {
            slot.1 = v;
        } else {
            self.0.push((key.to_string(), v));
        }
        self
    }
}

impl From<bool> for J {
    fn from(v: bool) -> Self {
        J::Bool(v)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> Self {
        J::U(v)
    }
}
impl From<u32> for J {
    fn from(v: u32) -> Self {
        J::U(v.into())
    }
}
impl From<usize> for J {
    fn from(v: usize) -> Self {
        J::U(v as u64)
    }
}
impl From<i64> for J {
    fn from(v: i64) -> Self {
        J::I(v)
    }
}
impl From<f64> for J {
    fn from(v: f64) -> Self {
        J::F(v)
    }
}
impl From<&str> for J {
    fn from(v: &str) -> Self {
        J::S(v.to_string())
    }
}
impl From<String> for J {
    fn from(v: String) -> Self {
        J::S(v)
    }
}
impl From<Obj> for J {
    fn from(v: Obj) -> Self {
        J::O(v)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> Self {
        match v {
            Some(v) => v.into(),
            None => J::Null,
        }
    }
}
impl From<Vec<String>> for J {
    fn from(v: Vec<String>) -> Self {
        J::A(v.into_iter().map(J::S).collect())
    }
}

/// Rounds `x` to `digits` decimal places (for readable output).
pub fn round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for J {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            J::Null => f.write_str("null"),
            J::Bool(b) => write!(f, "{b}"),
            J::U(v) => write!(f, "{v}"),
            J::I(v) => write!(f, "{v}"),
            J::F(v) if v.is_finite() => write!(f, "{v}"),
            J::F(_) => f.write_str("null"),
            J::S(s) => write_str(f, s),
            J::A(a) => {
                f.write_char('[')?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            J::O(o) => write!(f, "{o}"),
        }
    }
}

impl fmt::Display for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write_str(f, k)?;
            f.write_char(':')?;
            write!(f, "{v}")?;
        }
        f.write_char('}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json() {
        let mut o = Obj::new();
        o.set("a", 1u64)
            .set("b", "x\"y\n")
            .set("c", 1.5f64)
            .set("d", f64::NAN)
            .set("e", None::<u64>)
            .set("f", vec!["p".to_string()]);
        o.set("a", 2u64);
        assert_eq!(
            o.to_string(),
            r#"{"a":2,"b":"x\"y\n","c":1.5,"d":null,"e":null,"f":["p"]}"#
        );
        assert_eq!(round(1.23456, 2), 1.23);
    }
}

//! Durations and sizes as people write them: `750ms`, `3s`, `2m`; `64KiB`,
//! `1MiB`, `512`. They read back the same way, so `/config` shows what a
//! person would have written.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `750ms`, `3s`, `1m 30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"750ms\", \"3s\", \"2m\""
            ))
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

/// A size in bytes written as `512`, `64KiB`, `1MiB`, `2GiB` (also `KB`,
/// `MB`, `GB`, taken as powers of 1024 like nginx does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl Size {
    /// Parse `64KiB` and friends.
    pub fn parse(text: &str) -> Result<Size, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: usize = number.parse().map_err(|_| {
            format!("{text:?} is not a size; write e.g. \"64KiB\", \"1MiB\", \"512\"")
        })?;
        let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?}; use B, KiB, MiB or GiB"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(Size)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(text) => Size::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A body limit from the file: `0` is none.
pub(crate) fn limit_of(size: Size) -> Option<u64> {
    u64::try_from(size.0).ok().filter(|bytes| *bytes > 0)
}

#[cfg(test)]
mod tests {
    use super::Size;

    #[test]
    fn sizes_parse_and_print_back() {
        for (text, bytes, shown) in [
            ("512", 512, "512"),
            ("64KiB", 65536, "64KiB"),
            ("64 KiB", 65536, "64KiB"),
            ("1MiB", 1 << 20, "1MiB"),
            ("2kb", 2048, "2KiB"),
        ] {
            let size = Size::parse(text).unwrap();
            assert_eq!(size.0, bytes, "{text}");
            assert_eq!(size.to_string(), shown);
        }
        assert!(Size::parse("lots").is_err());
        assert!(Size::parse("5 parsecs").is_err());
    }
}

//! A small JSON writer: the web view's documents are built straight into a `String`, without a
//! serialization framework in the collector's dependencies.

use std::fmt::Write as _;

/// Appends `text` as a JSON string. Besides what JSON requires, `<`, `>` and `&` are escaped
/// too, so a document can never close a `<script>` element it ends up in.
pub(crate) fn push_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a number; what JSON cannot say (NaN, infinities) becomes `null`.
pub(crate) fn push_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        out.push_str("null");
    }
}

/// Writes one JSON object: `{"key":value,…}`, keys in call order.
pub(crate) struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    /// Writes the key; the caller appends the value to the returned buffer.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(':');
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_str(self.key(key), value);
        self
    }

    pub(crate) fn int(&mut self, key: &str, value: impl Into<i128>) -> &mut Self {
        let value = value.into();
        let _ = write!(self.key(key), "{value}");
        self
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// `"key":[…]` with `each` writing one element per item (commas are added here).
    pub(crate) fn array<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        each: impl FnMut(&mut String, T),
    ) -> &mut Self {
        push_array(self.key(key), items, each);
        self
    }

    /// `"key":[["k","v"],…]`: pairs in order, keys may repeat.
    pub(crate) fn pairs<'p>(
        &mut self,
        key: &str,
        pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
    ) -> &mut Self {
        self.array(key, pairs, |out, (k, v)| {
            out.push('[');
            push_str(out, k);
            out.push(',');
            push_str(out, v);
            out.push(']');
        })
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

/// Appends `[…]` with `each` writing one element per item.
pub(crate) fn push_array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_and_html_need() {
        let mut out = String::new();
        push_str(&mut out, "a\"b\\c\n\u{1}</script>&\u{2028}é");
        assert_eq!(out, r#""a\"b\\c\n\u0001\u003c/script\u003e\u0026\u2028é""#);
    }

    #[test]
    fn objects_arrays_and_numbers() {
        let mut numbers = String::new();
        push_f64(&mut numbers, 1.5);
        push_f64(&mut numbers, f64::NAN);
        push_f64(&mut numbers, f64::NEG_INFINITY);
        assert_eq!(numbers, "1.5nullnull");
        let mut out = String::new();
        let mut object = Object::new(&mut out);
        object
            .str("s", "x")
            .int("i", -3i64)
            .bool("b", true)
            .pairs("p", [("k", "v"), ("k", "w")])
            .array("a", [1, 2], |out, n| out.push_str(&n.to_string()));
        object.end();
        assert_eq!(
            out,
            r#"{"s":"x","i":-3,"b":true,"p":[["k","v"],["k","w"]],"a":[1,2]}"#
        );
    }
}

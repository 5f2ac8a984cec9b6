//! The instance's own properties, given by the user: `SW_AGENT_INSTANCE_PROPERTIES_JSON` (the
//! Python agent's name) or `SW_INSTANCE_PROPERTIES_JSON` (the Java agent's), a flat JSON object
//! such as `{"pod":"web-1","namespace":"shop"}`. OAP keeps them beside the instance; `pod` and
//! `namespace` locate its Kubernetes pod for on-demand pod logs and the service hierarchy.
//!
//! A small parser of its own, for the one shape both agents take: an object whose values are
//! strings (numbers and booleans are kept as written, as the other agents' JSON readers turn
//! them into text). Anything else is an error saying where the text stopped making sense.

use super::ConfigError;
use super::check::invalid;

/// Most properties in one configuration.
pub(super) const MAX_PROPERTIES: usize = 64;
/// Longest key and value, in characters.
pub(super) const MAX_KEY_CHARS: usize = 256;
pub(super) const MAX_VALUE_CHARS: usize = 1_024;
/// Longest JSON text, in bytes.
const MAX_JSON_LEN: usize = 64 * 1024;

const EXPECTED: &str = "a JSON object of string values, e.g. {\"pod\":\"web-1\"}";

/// Parses `value`, the JSON text of `variable`; empty text is no property. Keys are checked as
/// [`checked`] does; a key given twice keeps its last value, as OAP would.
pub(super) fn parse(variable: &str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    if value.len() > MAX_JSON_LEN {
        return Err(invalid(variable, value, "at most 65536 bytes of JSON"));
    }
    let pairs = Parser { text: value, at: 0 }
        .object()
        .map_err(|(at, what)| {
            let expected = format!("{EXPECTED}; at byte {at}: {what}");
            invalid(variable, value, &expected)
        })?;
    let mut properties = Vec::new();
    for (key, value) in pairs {
        set(&mut properties, key, value);
    }
    checked(variable, properties).map_err(|e| ConfigError {
        value: value.to_owned(),
        ..e
    })
}

/// Sets `key` to `value` in `properties`: replaced in place when present, else appended.
pub(super) fn set(properties: &mut Vec<(String, String)>, key: String, value: String) {
    match properties.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => properties.push((key, value)),
    }
}

/// Checks the properties: at most [`MAX_PROPERTIES`]; keys non-empty, at most
/// [`MAX_KEY_CHARS`], without control characters; values at most [`MAX_VALUE_CHARS`]. The
/// error's value is the first property at fault, `key=value`.
pub(super) fn checked(
    variable: &str,
    properties: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    if properties.len() > MAX_PROPERTIES {
        return Err(invalid(
            variable,
            format!("{} properties", properties.len()),
            "at most 64 properties",
        ));
    }
    for (key, value) in &properties {
        if key.is_empty()
            || key.chars().count() > MAX_KEY_CHARS
            || key.chars().any(char::is_control)
            || value.chars().count() > MAX_VALUE_CHARS
        {
            return Err(invalid(
                variable,
                format!("{key}={value}"),
                "keys of 1 to 256 characters without control characters, values of at most \
                 1024 characters",
            ));
        }
    }
    Ok(properties)
}

/// Where the text stopped making sense (a byte offset) and why.
type Stop = (usize, &'static str);

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn object(mut self) -> Result<Vec<(String, String)>, Stop> {
        let mut pairs = Vec::new();
        self.expect(b'{', "the text must be one JSON object, starting with '{'")?;
        if self.eat(b'}') {
            return self.end(pairs);
        }
        loop {
            if pairs.len() == MAX_PROPERTIES {
                return Err((self.at, "more than 64 properties"));
            }
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err((self.at, "a key must be a string in double quotes"));
            }
            let key = self.string()?;
            self.expect(b':', "a key must be followed by ':'")?;
            let value = self.value()?;
            pairs.push((key, value));
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}', "expected ',' or '}' after a value")?;
            return self.end(pairs);
        }
    }

    fn end(mut self, pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, Stop> {
        self.skip_space();
        match self.peek() {
            None => Ok(pairs),
            Some(_) => Err((self.at, "text after the object")),
        }
    }

    /// A value as text: a string's contents, a number or boolean as written.
    fn value(&mut self) -> Result<String, Stop> {
        self.skip_space();
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') if self.rest().starts_with("true") => Ok(self.literal("true")),
            Some(b'f') if self.rest().starts_with("false") => Ok(self.literal("false")),
            _ => Err((self.at, "a value must be a string, a number or a boolean")),
        }
    }

    fn literal(&mut self, word: &'static str) -> String {
        self.at += word.len();
        word.to_owned()
    }

    fn number(&mut self) -> Result<String, Stop> {
        let start = self.at;
        self.eat(b'-');
        if !self.eat(b'0') && !self.digits() {
            return Err((self.at, "a number needs digits"));
        }
        if self.eat(b'.') && !self.digits() {
            return Err((self.at, "a number needs digits after '.'"));
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.digits() {
                return Err((self.at, "a number needs digits in its exponent"));
            }
        }
        Ok(self.text[start..self.at].to_owned())
    }

    /// Whether at least one digit was there.
    fn digits(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at > start
    }

    /// A string, the opening quote next.
    fn string(&mut self) -> Result<String, Stop> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            // Copy the run up to the next quote, backslash or control character at once.
            let run = rest
                .find(|c: char| c == '"' || c == '\\' || c < ' ')
                .ok_or((self.text.len(), "a string is not closed"))?;
            out.push_str(&rest[..run]);
            self.at += run;
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    out.push(self.escape()?);
                }
                _ => return Err((self.at, "a control character inside a string")),
            }
        }
    }

    /// The character of an escape, the backslash just read.
    fn escape(&mut self) -> Result<char, Stop> {
        let at = self.at;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.at += 1;
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair: the low half must follow as `\uXXXX`.
                    if !self.rest().starts_with("\\u") {
                        return Err((at, "an unpaired surrogate in a \\u escape"));
                    }
                    self.at += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err((at, "an unpaired surrogate in a \\u escape"));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                return char::from_u32(code).ok_or((at, "an unpaired surrogate in a \\u escape"));
            }
            _ => return Err((at, "an unknown escape in a string")),
        };
        self.at += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        let digits = self
            .rest()
            .get(..4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or((self.at, "\\u needs four hex digits"))?;
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| (self.at, "\\u needs four hex digits"))
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), Stop> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err((self.at, what))
        }
    }

    /// Skips white space, then takes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn ok(json: &str) -> Vec<(String, String)> {
        parse("V", json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn stop(json: &str) -> String {
        let err = parse("V", json).unwrap_err();
        assert_eq!(err.variable, "V");
        assert_eq!(err.value, json);
        err.expected
    }

    #[test]
    fn reads_a_flat_object() {
        assert_eq!(ok(""), pairs(&[]));
        assert_eq!(ok(" { } "), pairs(&[]));
        assert_eq!(
            ok(r#"{"pod": "web-1", "namespace":"shop" }"#),
            pairs(&[("pod", "web-1"), ("namespace", "shop")])
        );
        // Numbers and booleans as written, as the Java and Python agents' readers give them.
        assert_eq!(
            ok(r#"{"replicas":3,"ratio":-0.5e+2,"canary":true,"x":false}"#),
            pairs(&[
                ("replicas", "3"),
                ("ratio", "-0.5e+2"),
                ("canary", "true"),
                ("x", "false")
            ])
        );
        // A key twice: the last value, in the first one's place.
        assert_eq!(
            ok(r#"{"a":"1","b":"2","a":"3"}"#),
            pairs(&[("a", "3"), ("b", "2")])
        );
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            ok(r#"{"k":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00é"}"#),
            pairs(&[("k", "a\"b\\c/d\n\té😀é")])
        );
    }

    #[test]
    fn says_where_and_why_it_stopped() {
        assert!(stop("pod=web-1").contains("at byte 0: the text must be one JSON object"));
        assert!(stop(r#"{"pod":null}"#).contains("at byte 7: a value must be a string"));
        assert!(stop(r#"{"pod":{"a":"b"}}"#).contains("a value must be a string"));
        assert!(stop(r#"{"pod":["a"]}"#).contains("a value must be a string"));
        assert!(stop(r#"{pod:"a"}"#).contains("at byte 1: a key must be a string"));
        assert!(stop(r#"{"pod" "a"}"#).contains("followed by ':'"));
        assert!(stop(r#"{"pod":"a" "b":"c"}"#).contains("expected ',' or '}'"));
        assert!(stop(r#"{"pod":"a",}"#).contains("a key must be a string"));
        assert!(stop(r#"{"pod":"a"} x"#).contains("text after the object"));
        assert!(stop(r#"{"pod":"a"#).contains("a string is not closed"));
        assert!(stop("{\"pod\":\"a\nb\"}").contains("control character"));
        assert!(stop(r#"{"k":"\x"}"#).contains("unknown escape"));
        assert!(stop(r#"{"k":"\u12"}"#).contains("four hex digits"));
        assert!(stop(r#"{"k":"\ud83d"}"#).contains("unpaired surrogate"));
        assert!(stop(r#"{"k":"\ude00"}"#).contains("unpaired surrogate"));
        assert!(stop(r#"{"k":01}"#).contains("expected ',' or '}'"));
        assert!(stop(r#"{"k":1.}"#).contains("digits after '.'"));
        assert!(stop(r#"{"k":-}"#).contains("needs digits"));
        assert!(stop(r#"{"k":1e}"#).contains("exponent"));
        assert!(stop(r#"{"k":tru}"#).contains("a value must be"));
    }

    #[test]
    fn bounds_keys_values_and_count() {
        assert!(stop(r#"{"":"a"}"#).contains("keys of 1 to 256"));
        let long_value = format!(r#"{{"k":"{}"}}"#, "v".repeat(1_025));
        assert!(stop(&long_value).contains("values of at most 1024"));
        let long_key = format!(r#"{{"{}":"v"}}"#, "k".repeat(257));
        assert!(stop(&long_key).contains("keys of 1 to 256"));
        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}":"v""#)).collect();
        assert!(stop(&format!("{{{}}}", many.join(","))).contains("more than 64"));
        let most: Vec<String> = (0..64).map(|i| format!(r#""k{i}":"v""#)).collect();
        assert_eq!(ok(&format!("{{{}}}", most.join(","))).len(), 64);
        assert!(stop(&"{".repeat(70_000)).contains("65536 bytes"));
    }

    #[test]
    fn never_panics_on_cut_text() {
        let json = r#"{"k":"a\u00e9\ud83d\ude00","n":-1.5e3,"b":true}"#;
        for end in 0..=json.len() {
            if let Some(prefix) = json.get(..end) {
                let _ = parse("V", prefix);
            }
        }
    }
}

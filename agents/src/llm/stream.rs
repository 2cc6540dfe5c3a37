//! Reading structured output while the model writes it.
//!
//! An agent's output is one JSON object (a `final_result` tool call's
//! arguments, or the content in native mode), and the part a person reads is
//! one of its string fields. [`FieldExtractor`] is fed the JSON text in
//! whatever fragments the stream delivers and yields that field's decoded
//! text as it grows: escapes (`\n`, `\"`, `\u00e9`, surrogate pairs as two
//! `\uXXXX`) are decoded, and nothing is yielded until it is whole — never
//! half an escape, half a surrogate pair or half a UTF-8 character — so
//! what it yields is always a prefix of the field's final value.
//!
//! It is a tolerant scanner, not a validator: anything before the first `{`
//! (a Markdown fence, say) is skipped, only the root object's own field of
//! that name counts (not one inside a nested object, not a string value that
//! happens to read like the key), and invalid JSON yields whatever it
//! yields — the decoded output, not this, is what counts.

/// Yields the text of one top-level string field of a JSON object, as the
/// object's text arrives in fragments.
///
/// ```
/// use floe_agents::llm::stream::FieldExtractor;
///
/// let mut reply = FieldExtractor::new("message");
/// assert_eq!(reply.push_str(r#"{"name": "Al", "mess"#), "");
/// assert_eq!(reply.push_str(r#"age": "Hi \"Al"#), "Hi \"Al");
/// assert_eq!(reply.push_str(r#"\u00e9x\ud83d"#), "\u{e9}x");
/// assert_eq!(reply.push_str(r#"\ude00!", "step_completed": true}"#), "\u{1f600}!");
/// assert_eq!(reply.text(), "Hi \"Al\u{e9}x\u{1f600}!");
/// assert!(reply.is_complete());
/// ```
#[derive(Debug, Clone)]
pub struct FieldExtractor {
    field: String,
    /// Containers open (0: before the root object, or after it).
    depth: u32,
    /// The root object has closed: nothing more is read.
    finished: bool,
    /// At depth 1, the next string is a key (after `{` or `,`).
    expect_key: bool,
    /// The last key read at depth 1 was `field`.
    key_is_field: bool,
    /// The string being read, if inside one.
    string: Option<Reading>,
    /// The key being decoded.
    key: String,
    /// The field's decoded text so far.
    text: String,
    /// The field's closing quote has been read.
    complete: bool,
}

/// A string being read: what it is, and its decoder.
#[derive(Debug, Clone)]
struct Reading {
    role: Role,
    decoder: Decoder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A key of the root object: decoded into `key`.
    Key,
    /// The field's value: decoded into `text`.
    Field,
    /// Anything else: skipped (escapes still followed, so `\"` does not end
    /// it).
    Other,
}

impl FieldExtractor {
    /// Follows the root object's field `field`.
    pub fn new(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            depth: 0,
            finished: false,
            expect_key: false,
            key_is_field: false,
            string: None,
            key: String::new(),
            text: String::new(),
            complete: false,
        }
    }

    /// The field's text decoded so far: always a prefix of its final value.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the field's value has been read to its closing quote.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Feeds the next fragment; returns the text it added to the field
    /// (often empty).
    pub fn push_str(&mut self, fragment: &str) -> &str {
        self.push(fragment.as_bytes())
    }

    /// Feeds the next bytes (which may end inside a UTF-8 character); returns
    /// the text they added to the field.
    pub fn push(&mut self, bytes: &[u8]) -> &str {
        let before = self.text.len();
        for &byte in bytes {
            if self.finished {
                break;
            }
            self.byte(byte);
        }
        &self.text[before..]
    }

    fn byte(&mut self, byte: u8) {
        if let Some(reading) = &mut self.string {
            let out = match reading.role {
                Role::Key => Some(&mut self.key),
                Role::Field => Some(&mut self.text),
                Role::Other => None,
            };
            if reading.decoder.byte(byte, out) {
                let role = reading.role;
                self.string = None;
                match role {
                    Role::Key => {
                        self.key_is_field = self.key == self.field;
                        self.expect_key = false;
                    }
                    Role::Field => {
                        self.complete = true;
                        self.finished = true;
                    }
                    Role::Other => {}
                }
            }
            return;
        }
        match byte {
            b'{' | b'[' if self.depth > 0 => self.depth += 1,
            b'{' => {
                // The root object (anything before it is skipped).
                self.depth = 1;
                self.expect_key = true;
            }
            _ if self.depth == 0 => {}
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.finished = true;
                }
            }
            b',' if self.depth == 1 => {
                self.expect_key = true;
                self.key_is_field = false;
            }
            b'"' => {
                let role = if self.depth != 1 {
                    Role::Other
                } else if self.expect_key {
                    self.key.clear();
                    Role::Key
                } else if self.key_is_field {
                    Role::Field
                } else {
                    Role::Other
                };
                self.string = Some(Reading {
                    role,
                    decoder: Decoder::default(),
                });
            }
            _ => {}
        }
    }
}

/// Decodes a JSON string's body, byte by byte, appending only whole
/// characters.
#[derive(Debug, Clone, Default)]
struct Decoder {
    /// Inside an escape: the bytes after the backslash so far.
    escape: Option<Vec<u8>>,
    /// A `\uD800`–`\uDBFF` waiting for its low half.
    high: Option<u16>,
    /// The first bytes of a multi-byte UTF-8 character.
    utf8: Vec<u8>,
}

impl Decoder {
    /// Takes one byte of the string; returns true at its closing quote.
    fn byte(&mut self, byte: u8, mut out: Option<&mut String>) -> bool {
        let mut push = |c: char| {
            if let Some(out) = out.as_deref_mut() {
                out.push(c);
            }
        };
        if let Some(escape) = &mut self.escape {
            escape.push(byte);
            let simple = match escape[0] {
                b'"' => Some('"'),
                b'\\' => Some('\\'),
                b'/' => Some('/'),
                b'b' => Some('\u{8}'),
                b'f' => Some('\u{c}'),
                b'n' => Some('\n'),
                b'r' => Some('\r'),
                b't' => Some('\t'),
                b'u' => None,
                // Not JSON: keep the character as written.
                other => Some(char::from(other)),
            };
            if let Some(c) = simple {
                self.escape = None;
                if self.high.take().is_some() {
                    push(char::REPLACEMENT_CHARACTER);
                }
                push(c);
                return false;
            }
            if escape.len() < 5 {
                return false;
            }
            let unit = std::str::from_utf8(&escape[1..])
                .ok()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            self.escape = None;
            match unit {
                None => {
                    if self.high.take().is_some() {
                        push(char::REPLACEMENT_CHARACTER);
                    }
                    push(char::REPLACEMENT_CHARACTER);
                }
                Some(high @ 0xD800..=0xDBFF) => {
                    if self.high.replace(high).is_some() {
                        push(char::REPLACEMENT_CHARACTER);
                    }
                }
                Some(low @ 0xDC00..=0xDFFF) => match self.high.take() {
                    Some(high) => {
                        let code = 0x10000
                            + ((u32::from(high) - 0xD800) << 10)
                            + (u32::from(low) - 0xDC00);
                        push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    None => push(char::REPLACEMENT_CHARACTER),
                },
                Some(unit) => {
                    if self.high.take().is_some() {
                        push(char::REPLACEMENT_CHARACTER);
                    }
                    push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
            }
            return false;
        }
        if self.utf8.is_empty() {
            match byte {
                b'"' => {
                    if self.high.take().is_some() {
                        push(char::REPLACEMENT_CHARACTER);
                    }
                    return true;
                }
                // A pending high surrogate waits for this escape: its low
                // half, or not.
                b'\\' => {
                    self.escape = Some(Vec::with_capacity(5));
                    return false;
                }
                0x00..=0x7F => {
                    if self.high.take().is_some() {
                        push(char::REPLACEMENT_CHARACTER);
                    }
                    push(char::from(byte));
                    return false;
                }
                _ => {}
            }
        }
        // A multi-byte character: wait for all of it.
        self.utf8.push(byte);
        let expected = match self.utf8[0] {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        let continuation = self.utf8.len() == 1 || byte & 0xC0 == 0x80;
        if continuation && self.utf8.len() < expected {
            return false;
        }
        if self.high.take().is_some() {
            push(char::REPLACEMENT_CHARACTER);
        }
        match std::str::from_utf8(&self.utf8) {
            Ok(text) => text.chars().for_each(&mut push),
            Err(_) => push(char::REPLACEMENT_CHARACTER),
        }
        self.utf8.clear();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field's text when `json` arrives cut at `cuts` (byte positions),
    /// checking on the way that every step yields a prefix of `expected`.
    fn read(json: &[u8], cuts: &[usize], expected: &str) -> String {
        let mut extractor = FieldExtractor::new("message");
        let mut yielded = String::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&json.len())) {
            yielded.push_str(extractor.push(&json[start..cut]));
            assert!(
                expected.starts_with(&yielded),
                "{yielded:?} is not a prefix of {expected:?} (cuts {cuts:?})"
            );
            assert_eq!(yielded, extractor.text());
            start = cut;
        }
        yielded
    }

    /// Every split in two and in three pieces gives the same text, which is
    /// what serde_json decodes.
    fn check_every_split(json: &str) {
        let object = &json[json.find('{').unwrap_or(0)..=json.rfind('}').unwrap_or(0)];
        let value: serde_json::Value = serde_json::from_str(object).expect("test input is JSON");
        let expected = value["message"].as_str().expect("message").to_owned();
        let bytes = json.as_bytes();
        for a in 0..=bytes.len() {
            assert_eq!(read(bytes, &[a], &expected), expected, "cut at {a}");
            for b in a..=bytes.len() {
                assert_eq!(read(bytes, &[a, b], &expected), expected, "cuts {a}, {b}");
            }
        }
        // And one byte at a time.
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(read(bytes, &cuts, &expected), expected);
    }

    #[test]
    fn plain_text_is_yielded_as_it_arrives() {
        let mut e = FieldExtractor::new("message");
        assert_eq!(e.push_str("{\"message\": \"Hel"), "Hel");
        assert_eq!(e.push_str("lo"), "lo");
        assert!(!e.is_complete());
        assert_eq!(e.push_str(" there\", \"x\": 1}"), " there");
        assert!(e.is_complete());
        assert_eq!(e.text(), "Hello there");
    }

    #[test]
    fn escapes_are_decoded_whatever_the_split() {
        check_every_split(r#"{"message":"a\"b\\c\/d\ne\tf\r\b\f","x":1}"#);
        check_every_split(r#"{"message": "caf\u00e9 \u4e2d\u6587 \ud83d\ude00 done"}"#);
        check_every_split("{\"message\": \"raw caf\u{e9} \u{4e2d} \u{1f600}!\"}");
    }

    #[test]
    fn other_fields_nested_objects_and_look_alikes_are_skipped() {
        check_every_split(
            r#"{"name": "message", "nested": {"message": "no", "list": ["message", {"a": "}"}]},
                "quote": "he said \"message\": \"x\"", "n": -1.5e3, "ok": true, "none": null,
                "message": "yes, this one", "message2": "no"}"#,
        );
        check_every_split(r#"{"learned": {"role": "dev"}, "message" : "after a nested object"}"#);
    }

    #[test]
    fn fences_before_the_object_are_skipped() {
        check_every_split("```json\n{\"message\": \"fenced\"}\n```");
    }

    #[test]
    fn only_the_root_object_counts() {
        let mut e = FieldExtractor::new("message");
        assert_eq!(e.push_str(r#"{"a": 1} {"message": "a second object"}"#), "");
        let mut e = FieldExtractor::new("message");
        assert_eq!(e.push_str(r#"{"message": null, "b": "x"}"#), "");
        assert!(!e.is_complete());
    }

    #[test]
    fn lone_surrogates_and_bad_escapes_become_replacement_characters() {
        let mut e = FieldExtractor::new("message");
        e.push_str(r#"{"message": "a\ud83db\ude00c\ud83d\n\u12G4"}"#);
        assert_eq!(e.text(), "a\u{fffd}b\u{fffd}c\u{fffd}\n\u{fffd}");
        // A high surrogate is held back until its low half is known.
        let mut e = FieldExtractor::new("message");
        assert_eq!(e.push_str(r#"{"message": "x\ud83d"#), "x");
        assert_eq!(e.push_str(r#"\ude00"#), "\u{1f600}");
    }

    #[test]
    fn a_key_with_escapes_is_compared_decoded() {
        let mut e = FieldExtractor::new("message");
        e.push_str(r#"{"mess\u0061ge": "escaped key"}"#);
        assert_eq!(e.text(), "escaped key");
    }
}

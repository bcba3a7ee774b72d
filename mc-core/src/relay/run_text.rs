//! [`RunText`]: the reply text of a run so far, and the `chunk`s that bring a client from the
//! text it has to the text the gateway has (docs/protocol.md: `offset` = UTF-8 bytes before `delta`; a
//! client appends when `offset` equals its length and replaces from `offset` otherwise).

use mc_openclaw::TextUpdate;

/// What applying an update gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Nothing changed.
    Unchanged,
    /// The chunk to send.
    Chunk {
        /// Bytes before `delta`.
        offset: usize,
        /// The new text from `offset`.
        delta: String,
    },
    /// The text would exceed the cap; it was not changed.
    TooLong,
}

/// A run's reply text so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunText {
    text: String,
}

impl RunText {
    /// The text so far.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Applies an update, refusing text longer than `cap` bytes.
    pub(crate) fn apply(&mut self, update: TextUpdate<'_>, cap: usize) -> Applied {
        let new_len = match update {
            TextUpdate::Whole(t) | TextUpdate::Replace(t) => t.len(),
            TextUpdate::Append(t) => self.text.len() + t.len(),
        };
        if new_len > cap {
            return Applied::TooLong;
        }
        match update {
            TextUpdate::Whole(t) | TextUpdate::Replace(t) => match chunk_between(&self.text, t) {
                Some((offset, delta)) => {
                    t.clone_into(&mut self.text);
                    Applied::Chunk { offset, delta }
                }
                None => Applied::Unchanged,
            },
            TextUpdate::Append("") => Applied::Unchanged,
            TextUpdate::Append(t) => {
                let offset = self.text.len();
                self.text.push_str(t);
                Applied::Chunk { offset, delta: t.to_owned() }
            }
        }
    }
}

/// Bytes of `a` and `b` that are equal from the start, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let n = a.len().min(b.len());
    // Fast path: one is a prefix of the other (a stream that only grows): one memcmp.
    if a.as_bytes()[..n] == b.as_bytes()[..n] {
        return n;
    }
    let mut i = a.as_bytes().iter().zip(b.as_bytes()).position(|(x, y)| x != y).unwrap_or(n);
    while !a.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The chunk that turns `old` into `new`: the offset of the first changed byte and the text
/// from there; `None` when nothing changed.
fn chunk_between(old: &str, new: &str) -> Option<(usize, String)> {
    let offset = common_prefix(old, new);
    (offset != old.len() || offset != new.len()).then(|| (offset, new[offset..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_between_texts() {
        assert_eq!(chunk_between("Echo:", "Echo: Hi"), Some((5, " Hi".into())));
        assert_eq!(chunk_between("Echo: Hi", "Echo: Hi"), None);
        assert_eq!(chunk_between("Echo: Hx", "Echo: Hi"), Some((7, "i".into())), "a rewrite");
        assert_eq!(chunk_between("abc", "ab"), Some((2, String::new())));
    }

    #[test]
    fn common_prefix_respects_characters() {
        assert_eq!(common_prefix("Echo: Hi", "Echo: Hi there"), 8);
        assert_eq!(common_prefix("abc", "abd"), 2);
        assert_eq!(common_prefix("", "x"), 0);
        assert_eq!(common_prefix("héllo", "hélp"), 4);
        assert_eq!(common_prefix("日本", "日本語"), 6);
        assert_eq!(common_prefix("日本", "日x"), 3, "never inside a character");
    }

    #[test]
    fn updates_append_replace_and_respect_the_cap() {
        let mut text = RunText::default();
        assert_eq!(
            text.apply(TextUpdate::Whole("Hel"), 10),
            Applied::Chunk { offset: 0, delta: "Hel".into() }
        );
        assert_eq!(
            text.apply(TextUpdate::Append("lo"), 10),
            Applied::Chunk { offset: 3, delta: "lo".into() }
        );
        assert_eq!(text.apply(TextUpdate::Whole("Hello"), 10), Applied::Unchanged);
        assert_eq!(
            text.apply(TextUpdate::Replace("Help!"), 10),
            Applied::Chunk { offset: 3, delta: "p!".into() }
        );
        assert_eq!(text.apply(TextUpdate::Append(" more text"), 10), Applied::TooLong);
        assert_eq!(text.as_str(), "Help!", "a refused update changes nothing");
        assert_eq!(text.apply(TextUpdate::Append(""), 10), Applied::Unchanged);
    }
}

/// Property tests (proptest; `PROPTEST_CASES` sets how many, 256 by default, see
/// BENCHMARKS.md for the long run): whatever updates a gateway sends, a client that applies
/// the chunks by the protocol's rule ends with exactly the run's text.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn update() -> impl Strategy<Value = (u8, String)> {
        // Short texts over a small alphabet with multi-byte characters, so prefixes collide.
        (0u8..3, proptest::string::string_regex("[ab é😀]{0,12}").unwrap())
    }

    proptest! {
        #[test]
        fn a_client_applying_the_chunks_ends_with_the_run_text(
            updates in proptest::collection::vec(update(), 0..24),
            cap in 0usize..64,
        ) {
            let mut run = RunText::default();
            let mut client = String::new();
            for (kind, text) in &updates {
                let update = match kind {
                    0 => TextUpdate::Whole(text),
                    1 => TextUpdate::Replace(text),
                    _ => TextUpdate::Append(text),
                };
                let before = run.as_str().to_owned();
                match run.apply(update, cap) {
                    Applied::Chunk { offset, delta } => {
                        prop_assert!(client.is_char_boundary(offset.min(client.len())));
                        prop_assert!(offset <= client.len());
                        if offset != client.len() {
                            client.truncate(offset);
                        }
                        client.push_str(&delta);
                    }
                    Applied::Unchanged => prop_assert_eq!(run.as_str(), before.as_str()),
                    Applied::TooLong => prop_assert_eq!(run.as_str(), before.as_str()),
                }
                prop_assert!(run.as_str().len() <= cap);
                prop_assert_eq!(client.as_str(), run.as_str());
            }
        }
    }
}

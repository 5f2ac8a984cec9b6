//! Path patterns for `SW_AGENT_TRACE_IGNORE_PATH`, in the Ant style the Java agent documents:
//! `?` matches one character, `*` any run of characters within a path segment, and a segment
//! that is exactly `**` any number of segments, none included.
//!
//! The rules, precisely (they follow Spring's `AntPathMatcher`, which the Java agent's docs
//! point to, except where noted):
//! - Both the pattern and the path are split at `/`; empty segments are dropped (`/a//b` is
//!   `/a/b`), but a trailing `/` counts as an empty last segment, so `/a` and `/a/` differ while
//!   `/a/*` and `/a/**` match `/a/`.
//! - A pattern that starts with `/` matches only paths that do, and the other way round, unless
//!   its first segment is `**` (then `**` and `**/x` match rooted and unrooted paths alike).
//! - `**` inside a segment (`a**b`) is a `*`. `{` and `}` have no special meaning.
//!
//! Patterns are compiled once ([`PathPattern::new`]) and matched with bounded work: a pattern
//! that needs more characters than the path has is refused before any matching, so a 10 KB
//! pattern costs one comparison against a normal request path (about 5 ns); the blocks anchored
//! at the ends are compared segment by segment from each end and stop at the first mismatch;
//! and in all the work is at most proportional to the pattern's length times the path's (no
//! backtracking beyond one star per segment and one placement per floating block: the leftmost
//! placement is always the right one).

/// A compiled `SW_AGENT_TRACE_IGNORE_PATH` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathPattern {
    text: String,
    /// Whether the path must start with `/`; `None` when the pattern starts with `**`.
    rooted: Option<bool>,
    /// Blocks of segment globs separated by `**`: `blocks[0]` is anchored at the start,
    /// the last at the end (when there is a `**`), the others float.
    blocks: Vec<Vec<Glob>>,
    /// The fewest bytes a matching path can have.
    min_len: usize,
}

/// One segment's pattern, consecutive `*`s collapsed into one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob {
    bytes: Box<[u8]>,
    /// The fewest bytes a matching segment has: literals, plus one per `?`.
    min_len: usize,
    /// No `*` or `?`: a plain comparison.
    literal: bool,
}

/// Paths of up to this many segments are split on the stack.
const STACK_SEGMENTS: usize = 32;

impl PathPattern {
    /// Compiles `pattern`. Every string is a valid pattern.
    pub(crate) fn new(pattern: &str) -> PathPattern {
        let (rooted, segments) = split(pattern);
        let mut blocks = vec![Vec::new()];
        let mut any_depth = false;
        let mut min_len = 0;
        for segment in segments {
            if segment == "**" {
                any_depth = true;
                // `**/**` is one `**`: skip an empty block between them.
                if !blocks.last().is_some_and(Vec::is_empty) || blocks.len() == 1 {
                    blocks.push(Vec::new());
                }
                continue;
            }
            let glob = Glob::new(segment);
            min_len += glob.min_len;
            if let Some(block) = blocks.last_mut() {
                block.push(glob);
            }
        }
        // `**` and `**/x` match rooted and unrooted paths; `/**` only rooted ones.
        let rooted = if !rooted && any_depth && blocks.first().is_some_and(Vec::is_empty) {
            None
        } else {
            Some(rooted)
        };
        PathPattern {
            text: pattern.to_owned(),
            rooted,
            blocks,
            min_len,
        }
    }

    /// The pattern as written.
    #[allow(dead_code)] // for messages and the live-settings API
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` matches. The head block is matched from the front and the tail block
    /// from the back without splitting the rest of the path: `/static/**` or `/**/*.css` look
    /// at one segment. Only floating blocks (`/a/**/b/**/c`) split what lies between.
    pub(crate) fn matches(&self, path: &str) -> bool {
        if path.len() < self.min_len
            || self
                .rooted
                .is_some_and(|rooted| path.starts_with('/') != rooted)
        {
            return false;
        }
        let Some((head, rest)) = self.blocks.split_first() else {
            return false; // `new` always makes a head block
        };
        let mut front = forward(path);
        // The start and end of the head's last segment.
        let mut head_last = None;
        for glob in head {
            match front.next() {
                Some((start, s)) if glob.matches(s) => head_last = Some((start, start + s.len())),
                _ => return false,
            }
        }
        let Some((tail, middle)) = rest.split_last() else {
            // No `**`: the head is the whole pattern.
            return front.next().is_none();
        };
        // The start of the tail's first segment.
        let mut tail_first = None;
        let mut back = backward(path);
        for glob in tail.iter().rev() {
            match back.next() {
                Some((start, s)) if glob.matches(s) => tail_first = Some(start),
                _ => return false,
            }
        }
        // Segments start at distinct offsets: the head and the tail must not share one.
        if let (Some((head_start, _)), Some(tail_start)) = (head_last, tail_first)
            && head_start >= tail_start
        {
            return false;
        }
        if middle.is_empty() {
            return true;
        }
        let from = head_last.map_or(0, |(_, end)| end);
        let (to, trailing) = match tail_first {
            Some(start) => (start, None),
            // The trailing empty segment, unless the head took it already (its last segment
            // then ends where the path does).
            None => (
                path.len(),
                (path.ends_with('/') && from < path.len()).then_some(""),
            ),
        };
        let between = path[from..to]
            .split('/')
            .filter(|s| !s.is_empty())
            .chain(trailing);
        let mut stack = [""; STACK_SEGMENTS];
        let mut count = 0;
        let mut heap = Vec::new();
        for segment in between {
            if count < STACK_SEGMENTS {
                stack[count] = segment;
            } else {
                if heap.is_empty() {
                    heap.extend_from_slice(&stack);
                }
                heap.push(segment);
            }
            count += 1;
        }
        let window = if heap.is_empty() {
            &stack[..count]
        } else {
            &heap[..]
        };
        floating_blocks_match(middle, window)
    }
}

/// Places each block at its leftmost match in `window`, in order: any later place leaves the
/// `**`s around it fewer segments to cover, never more, so no other placement needs trying.
fn floating_blocks_match(blocks: &[Vec<Glob>], window: &[&str]) -> bool {
    let mut at = 0;
    for block in blocks {
        let rest = &window[at..];
        if rest.len() < block.len() {
            return false;
        }
        let found = (0..=rest.len() - block.len())
            .find(|&i| block.iter().zip(&rest[i..]).all(|(g, s)| g.matches(s)));
        match found {
            Some(i) => at += i + block.len(),
            None => return false,
        }
    }
    true
}

/// The segments of `path` and where each starts, from the front: empty ones dropped, except
/// that a trailing `/` gives an empty last segment (starting at the end).
fn forward(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let trailing = path.ends_with('/').then_some((path.len(), ""));
    path.split('/')
        .scan(0, |at, s| {
            let start = *at;
            *at += s.len() + 1;
            Some((start, s))
        })
        .filter(|(_, s)| !s.is_empty())
        .chain(trailing)
}

/// [`forward`], from the back.
fn backward(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let trailing = path.ends_with('/').then_some((path.len(), ""));
    let segments = path
        .rsplit('/')
        .scan(path.len() + 1, |end, s| {
            let start = *end - 1 - s.len();
            *end = start;
            Some((start, s))
        })
        .filter(|(_, s)| !s.is_empty());
    trailing.into_iter().chain(segments)
}

/// Whether the text starts with `/`, and its segments: empty ones dropped, except that a
/// trailing `/` gives an empty last segment.
fn split(text: &str) -> (bool, impl Iterator<Item = &str>) {
    let trailing = (text.ends_with('/')).then_some("");
    let segments = text.split('/').filter(|s| !s.is_empty()).chain(trailing);
    (text.starts_with('/'), segments)
}

impl Glob {
    fn new(segment: &str) -> Glob {
        let mut bytes = Vec::with_capacity(segment.len());
        let mut min_len = 0;
        for &b in segment.as_bytes() {
            if b == b'*' {
                if bytes.last() != Some(&b'*') {
                    bytes.push(b);
                }
                continue;
            }
            min_len += 1;
            bytes.push(b);
        }
        let literal = !bytes.iter().any(|&b| b == b'*' || b == b'?');
        Glob {
            bytes: bytes.into(),
            min_len,
            literal,
        }
    }

    /// The classic wildcard match with one backtrack point: after a `*`, a mismatch restarts
    /// just past where the star's run began, so the work is at most pattern × text.
    fn matches(&self, text: &str) -> bool {
        let (p, t) = (&*self.bytes, text.as_bytes());
        if self.literal {
            return p == t;
        }
        if t.len() < self.min_len {
            return false;
        }
        let (mut pi, mut ti) = (0, 0);
        // (pattern index after the last star, text index its run would end at next)
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some(b'*') => {
                    pi += 1;
                    star = Some((pi, ti));
                    continue;
                }
                // `?` is one character, not one byte.
                Some(b'?') => {
                    pi += 1;
                    ti += char_len(t[ti]);
                    continue;
                }
                Some(&c) if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
            let Some((after_star, run_end)) = star else {
                return false;
            };
            let next = run_end + char_len(t[run_end]);
            star = Some((after_star, next));
            pi = after_star;
            ti = next;
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

/// The length of the UTF-8 character that starts with `first`.
fn char_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

/// Matches one pattern against one path, compiling it first (tests).
#[cfg(test)]
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    PathPattern::new(pattern).matches(path)
}

#[cfg(test)]
mod tests {
    use super::{PathPattern, path_matches};

    #[test]
    fn ant_style_patterns() {
        assert!(path_matches("/health", "/health"));
        assert!(!path_matches("/health", "/healthz"));
        assert!(path_matches("/static/*", "/static/app.js"));
        assert!(!path_matches("/static/*", "/static/js/app.js"));
        assert!(path_matches("/static/**", "/static/js/app.js"));
        assert!(path_matches("/**/metrics", "/a/b/metrics"));
        assert!(path_matches("/user?", "/users"));
        assert!(!path_matches("/user?", "/user/"));
        assert!(path_matches("**", "/anything/at/all"));
        assert!(!path_matches("/a*b", "/a/b"));
    }

    #[test]
    fn double_star_is_zero_or_more_segments() {
        // The cases issue 12 found missed.
        assert!(path_matches("/static/**/*.css", "/static/a.css"));
        assert!(path_matches("/static/**/*.css", "/static/a/b/c.css"));
        assert!(path_matches("/**/x*", "/a/x/b/xy"));
        assert!(path_matches("/a/**/b/*/c", "/a/x/b/y/b/z/c"));
        assert!(!path_matches("/static/**/*.css", "/static/a.js"));
        assert!(!path_matches("/static/**/*.css", "/assets/a.css"));
        assert!(path_matches("/static/**", "/static"));
        assert!(path_matches("/a/**/**/b", "/a/b"));
        assert!(path_matches("/a/**/b/**/c", "/a/b/c"));
        assert!(!path_matches("/a/**/b/**/c", "/a/c/b"));
        // A trailing `/` is one empty segment, which the head cannot share with a floating
        // block (found by the property test below).
        assert!(!path_matches("*/*/**/*/**", "a/"));
        assert!(!path_matches("*/*/**/*/**", "a//"));
        assert!(path_matches("*/*/**/*/**", "a/b/"));
    }

    #[test]
    fn slashes() {
        assert!(path_matches("/a//b", "/a/b"));
        assert!(path_matches("/a/b", "/a//b"));
        assert!(!path_matches("/a", "/a/"));
        assert!(!path_matches("/a/", "/a"));
        assert!(path_matches("/a/", "/a/"));
        assert!(path_matches("/a/*", "/a/"));
        assert!(path_matches("/a/**", "/a/"));
        assert!(path_matches("/", "/"));
        assert!(path_matches("/*", "/"));
        assert!(!path_matches("/", "/a"));
        assert!(!path_matches("a", "/a"));
        assert!(!path_matches("/**/a", "a"));
        assert!(!path_matches("/a", "a"));
        assert!(path_matches("**/a", "a"));
        assert!(path_matches("", ""));
        assert!(!path_matches("", "/"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(path_matches("/caf?", "/café"));
        assert!(path_matches("/?", "/😀"));
        assert!(!path_matches("/??", "/😀"));
        assert!(path_matches("/*é*", "/xéy"));
        assert!(path_matches("/a**b", "/axxb"));
    }

    #[test]
    fn hostile_patterns_are_refused_early() {
        let long = format!("/{}", "*a".repeat(5_000));
        let p = PathPattern::new(&long);
        assert!(!p.matches("/aaaa/bbbb"));
        assert!(p.matches(&format!("/{}", "a".repeat(5_000))));
        let deep = "/**/a".repeat(2_000);
        let p = PathPattern::new(&deep);
        assert!(!p.matches("/a/a/a"));
        assert!(p.matches(&"/a".repeat(2_000)));
        let stars = format!("/{}", "*".repeat(10_000));
        assert!(PathPattern::new(&stars).matches("/anything"));
        let double = "/**".repeat(3_000);
        assert!(PathPattern::new(&double).matches("/x/y/z"));
        assert_eq!(PathPattern::new(&double).as_str(), double);
    }

    #[test]
    fn long_paths_split_beyond_the_stack() {
        let path = "/s".repeat(100);
        assert!(path_matches("/**/s", &path));
        assert!(path_matches(&"/*".repeat(100), &path));
        assert!(!path_matches(&"/*".repeat(99), &path));
    }

    /// A plain recursive matcher written from the rules in the module docs: exponential, but
    /// obviously right on small inputs. The compiled matcher must agree with it.
    fn reference(pattern: &str, path: &str) -> bool {
        fn segments(text: &str) -> Vec<&str> {
            let mut out: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
            if text.ends_with('/') {
                out.push("");
            }
            out
        }
        fn sequence(p: &[&str], t: &[&str]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((&"**", rest)) => (0..=t.len()).any(|i| sequence(rest, &t[i..])),
                Some((glob, rest)) => {
                    let (g, s): (Vec<char>, Vec<char>) = (
                        glob.chars().collect(),
                        t.first().map_or(vec![], |s| s.chars().collect()),
                    );
                    !t.is_empty() && chars(&g, &s) && sequence(rest, &t[1..])
                }
            }
        }
        fn chars(p: &[char], t: &[char]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some(('*', rest)) => (0..=t.len()).any(|i| chars(rest, &t[i..])),
                Some(('?', rest)) => !t.is_empty() && chars(rest, &t[1..]),
                Some((c, rest)) => t.first() == Some(c) && chars(rest, &t[1..]),
            }
        }
        let (p, t) = (segments(pattern), segments(path));
        let floating = !pattern.starts_with('/') && p.first() == Some(&"**");
        if !floating && pattern.starts_with('/') != path.starts_with('/') {
            return false;
        }
        sequence(&p, &t)
    }

    mod properties {
        use proptest::prelude::*;

        use super::{PathPattern, reference};

        /// `cases` cases unless `PROPTEST_CASES` says otherwise.
        fn config(cases: u32) -> ProptestConfig {
            let default = ProptestConfig::default();
            match std::env::var_os("PROPTEST_CASES") {
                Some(_) => default,
                None => ProptestConfig { cases, ..default },
            }
        }

        /// Small patterns and paths over alphabets that make matches likely: built from
        /// characters (for the rules within a segment) or from whole segments (for `**`).
        fn pattern() -> impl Strategy<Value = String> {
            let chars = proptest::collection::vec(
                prop::sample::select(vec!["/", "/", "a", "b", "é", "*", "*", "?", "**", "/**/"]),
                0..8,
            )
            .prop_map(|parts| parts.concat());
            let segments = (
                any::<bool>(),
                proptest::collection::vec(
                    prop::sample::select(vec!["**", "**", "*", "a", "b", "a*", "*b", "?", ""]),
                    0..7,
                ),
                any::<bool>(),
            )
                .prop_map(|(lead, parts, trail)| joined(lead, &parts, trail));
            prop_oneof![chars, segments]
        }

        fn path() -> impl Strategy<Value = String> {
            let chars = proptest::collection::vec(
                prop::sample::select(vec!["/", "/", "a", "b", "é"]),
                0..10,
            )
            .prop_map(|parts| parts.concat());
            let segments = (
                any::<bool>(),
                proptest::collection::vec(
                    prop::sample::select(vec!["a", "b", "ab", "é", ""]),
                    0..7,
                ),
                any::<bool>(),
            )
                .prop_map(|(lead, parts, trail)| joined(lead, &parts, trail));
            prop_oneof![chars, segments]
        }

        fn joined(lead: bool, parts: &[&str], trail: bool) -> String {
            let mut out = if lead { "/".to_owned() } else { String::new() };
            out.push_str(&parts.join("/"));
            if trail {
                out.push('/');
            }
            out
        }

        proptest! {
            #![proptest_config(config(4_000))]

            #[test]
            fn agrees_with_the_reference(pattern in pattern(), path in path()) {
                prop_assert_eq!(
                    PathPattern::new(&pattern).matches(&path),
                    reference(&pattern, &path),
                    "pattern {:?}, path {:?}", pattern, path
                );
            }
        }

        proptest! {
            #![proptest_config(config(500))]

            #[test]
            fn never_panics(pattern in any::<String>(), path in any::<String>()) {
                let _ = PathPattern::new(&pattern).matches(&path);
            }

            #[test]
            fn a_path_matches_itself(path in "(/[a-z0-9.]{0,5}){0,6}") {
                prop_assert!(PathPattern::new(&path).matches(&path));
            }
        }
    }

    #[test]
    fn the_reference_agrees_on_the_documented_cases() {
        for (pattern, path, expected) in [
            ("/static/**/*.css", "/static/a.css", true),
            ("/**/x*", "/a/x/b/xy", true),
            ("/a/**/b/*/c", "/a/x/b/y/b/z/c", true),
            ("/a", "/a/", false),
            ("/a/*", "/a/", true),
            ("**", "a/b", true),
            ("/**", "a/b", false),
        ] {
            assert_eq!(reference(pattern, path), expected, "{pattern} {path}");
            assert_eq!(path_matches(pattern, path), expected, "{pattern} {path}");
        }
    }
}

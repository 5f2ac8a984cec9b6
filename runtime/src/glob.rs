//! Path patterns for `SW_AGENT_TRACE_IGNORE_PATH`, in the Ant style the Java agent uses:
//! `?` one character, `*` any run within a segment, `**` any run across segments.

pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    matches(pattern.as_bytes(), path.as_bytes())
}

fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point per kind of star: linear enough for the short
    // patterns and paths it sees, and no recursion to blow the stack on hostile input.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None; // (pattern after star, text pos, crosses '/')
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    let crosses = pattern.get(p + 1) == Some(&b'*');
                    p += if crosses { 2 } else { 1 };
                    star = Some((p, t, crosses));
                    continue;
                }
                b'?' if text[t] != b'/' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st, crosses)) if crosses || text[st] != b'/' => {
                star = Some((sp, st + 1, crosses));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::path_matches;

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
}

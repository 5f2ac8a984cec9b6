//! Ignored endpoint suffixes (`SW_AGENT_IGNORE_SUFFIX`), looked up by an endpoint's last byte.

/// The endpoint suffixes whose traces are not sampled (`SW_AGENT_IGNORE_SUFFIX`).
pub(crate) struct SuffixSet {
    /// None of them empty; sorted by their last byte.
    suffixes: Vec<String>,
    /// For each byte, the suffixes (a range of `suffixes`) that end with it. Most endpoints end
    /// with no suffix's last byte, and REST endpoints often end in `s` as `.js` and `.css` do:
    /// one look here spares comparing the others (a dozen by default) on every new trace.
    ending_with: Box<[(u16, u16); 256]>,
}

impl SuffixSet {
    pub(crate) fn new(suffixes: &[String]) -> SuffixSet {
        let mut suffixes: Vec<String> = suffixes
            .iter()
            .filter(|s| !s.is_empty())
            // More could never be told apart by a `u16` range; nobody configures that many.
            .take(usize::from(u16::MAX))
            .cloned()
            .collect();
        suffixes.sort_by_key(|s| s.as_bytes().last().copied());
        let mut ending_with = Box::new([(0u16, 0u16); 256]);
        for (i, suffix) in (0u16..).zip(&suffixes) {
            if let Some(&last) = suffix.as_bytes().last() {
                let range = &mut ending_with[usize::from(last)];
                if range.0 == range.1 {
                    *range = (i, i);
                }
                range.1 = i + 1;
            }
        }
        SuffixSet {
            suffixes,
            ending_with,
        }
    }

    /// Whether `name` ends with one of the suffixes.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let Some(&last) = name.as_bytes().last() else {
            return false;
        };
        let (start, end) = self.ending_with[usize::from(last)];
        self.suffixes
            .get(usize::from(start)..usize::from(end))
            .unwrap_or_default()
            .iter()
            .any(|suffix| name.ends_with(suffix.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::SuffixSet;

    #[test]
    fn suffixes_match_as_a_plain_search_would() {
        let list: Vec<String> = crate::config::DEFAULT_IGNORE_SUFFIX
            .split(',')
            .map(str::to_owned)
            .chain(["s".into(), "ss".into(), "é".into()])
            .collect();
        let set = SuffixSet::new(&list);
        let names = [
            "GET:/users",
            "GET:/app.js",
            "GET:/site.css",
            "GET:/favicon.ico",
            "GET:/hello",
            "GET:/a.jpeg",
            "GET:/a.jpg",
            "GET:/a.png",
            "GET:/x.mp4",
            "GET:/café",
            "GET:/users/{id}",
            "",
            "s",
            "GET:/a.html",
            "GET:/a.htm",
            "GET:/a.svg",
            "GET:/img",
        ];
        for name in names {
            let expected = list
                .iter()
                .any(|s| !s.is_empty() && name.ends_with(s.as_str()));
            assert_eq!(set.matches(name), expected, "{name:?}");
        }
    }

    #[test]
    fn suffixes_match_only_at_the_end() {
        let set = SuffixSet::new(&[".js".into(), ".css".into(), "o".into(), String::new()]);
        assert!(set.matches("GET:/static/app.js"));
        assert!(!set.matches("GET:/users"));
        assert!(!set.matches("GET:/app.jss"));
        assert!(set.matches("GET:/site.css"));
        assert!(set.matches("GET:/hello"));
        assert!(!set.matches("GET:/app.jsx"));
        assert!(!set.matches("GET:/s"));
        assert!(!set.matches(""));
        assert!(!SuffixSet::new(&[]).matches("GET:/x.js"));
        // Bytes past 127 (UTF-8) too.
        let set = SuffixSet::new(&["é".into()]);
        assert!(set.matches("GET:/café"));
        assert!(!set.matches("GET:/cafe"));
    }
}

//! What the agent prints on standard error, bounded whatever happens.
//!
//! The agent speaks when something changes (OAP goes away, answers again, refuses a signal, a
//! setting from OAP cannot be used): its callers say each distinct trouble once. This module is
//! the backstop for what they cannot foresee — thousands of bad values in one reply from OAP,
//! a flapping backend — so that the service's standard error is never flooded:
//!
//! - each line is cut to [`MAX_LINE_BYTES`] (a value quoted in it may be megabytes);
//! - at most [`LINES_PER_MINUTE`] lines are printed in a minute; the rest are counted, and the
//!   count is said with the next line printed once the minute is over.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most bytes of one line (cut on a character boundary, marked `…`).
pub(crate) const MAX_LINE_BYTES: usize = 1024;
/// Most lines printed in one minute.
pub(crate) const LINES_PER_MINUTE: u32 = 30;
const MINUTE: Duration = Duration::from_secs(60);

/// The lines printed in the current minute, and those held back.
struct Budget {
    window_start: Option<Instant>,
    printed: u32,
    held_back: u64,
}

static BUDGET: Mutex<Budget> = Mutex::new(Budget {
    window_start: None,
    printed: 0,
    held_back: 0,
});

/// Prints `line` on standard error, cut and within the minute's budget.
pub(crate) fn say(line: &str) {
    if let Some(text) = admit(line, Instant::now()) {
        eprintln!("{text}");
    }
}

/// What to print for `line` at `now`, if anything: the line cut to its budget, after a note of
/// the lines held back in the minute before.
fn admit(line: &str, now: Instant) -> Option<String> {
    let mut budget = BUDGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    budget.admit(line, now)
}

impl Budget {
    fn admit(&mut self, line: &str, now: Instant) -> Option<String> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= MINUTE);
        let mut out = String::new();
        if fresh {
            if self.held_back > 0 {
                out.push_str(&format!(
                    "skytrace: {} more lines were not printed (at most {LINES_PER_MINUTE} a \
                     minute)\n",
                    self.held_back
                ));
            }
            self.window_start = Some(now);
            self.printed = 0;
            self.held_back = 0;
        }
        if self.printed >= LINES_PER_MINUTE {
            self.held_back += 1;
            return None;
        }
        self.printed += 1;
        out.push_str(&cut(line));
        Some(out)
    }
}

/// `line` cut to [`MAX_LINE_BYTES`], marked when cut.
pub(crate) fn cut(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_LINE_BYTES {
        return line.into();
    }
    let kept = crate::boundary::cut(line, MAX_LINE_BYTES - '…'.len_utf8());
    format!("{kept}…").into()
}

/// `value` cut to `max` bytes for quoting in a line, marked with its full length when cut.
pub(crate) fn quote(value: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if value.len() <= max {
        return value.into();
    }
    let kept = crate::boundary::cut(value, max);
    format!("{kept}… ({} bytes)", value.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            window_start: None,
            printed: 0,
            held_back: 0,
        }
    }

    #[test]
    fn a_minute_prints_at_most_its_budget_then_says_what_it_held_back() {
        let mut budget = budget();
        let start = Instant::now();
        for i in 0..LINES_PER_MINUTE {
            assert!(budget.admit(&format!("line {i}"), start).is_some());
        }
        for _ in 0..5 {
            assert!(budget.admit("one too many", start).is_none());
        }
        let later = start + MINUTE;
        let next = budget.admit("next", later).unwrap();
        assert_eq!(
            next,
            "skytrace: 5 more lines were not printed (at most 30 a minute)\nnext"
        );
        assert!(budget.admit("and again", later).unwrap() == "and again");
    }

    #[test]
    fn long_lines_and_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(2_000);
        let line = cut(&long);
        assert!(line.len() <= MAX_LINE_BYTES && line.ends_with('…'));
        assert_eq!(cut("short"), "short");
        assert_eq!(quote("abcdef", 3), "abc… (6 bytes)");
        assert_eq!(quote("abc", 3), "abc");
    }
}

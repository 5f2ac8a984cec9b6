//! What the SQL integrations (sqlx, tokio-postgres, diesel, sea-orm) share: the exit span of
//! one statement, tagged as the Java agent's JDBC plugin tags it, and the text of its bound
//! values.
//!
//! A span is named `{db}/{client}/{method}` (`PostgreSQL/tokio-postgres/query`), never after
//! the SQL (OAP would see one endpoint per statement); it has layer Database, the database's
//! component, peer = the server's `host:port`, and the tags `db.type` = `sql`, `db.instance`
//! (the database's name), `db.statement` (cut at [`DEFAULT_STATEMENT_MAX_LEN`] bytes and
//! marked `...`) and, when the recording trace's
//! [`crate::TraceSettings::sql_parameters_max_length`] is above 0, `db.sql.parameters`.

use std::fmt::{self, Write as _};

use crate::boundary::cut;
use crate::segment::SpanLayer;
use crate::span::Span;

/// How much of the SQL text `db.statement` keeps, in bytes: the Java agent's
/// `plugin.jdbc.sql_body_max_length`.
pub const DEFAULT_STATEMENT_MAX_LEN: usize = 2048;

/// Where a connection's statements go: what their spans are tagged with.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) peer: String,
    pub(crate) instance: String,
    pub(crate) component: i32,
    pub(crate) statement_max_len: usize,
}

impl Endpoint {
    pub(crate) fn new(peer: String, instance: String, component: i32) -> Endpoint {
        Endpoint {
            peer,
            instance,
            component,
            statement_max_len: DEFAULT_STATEMENT_MAX_LEN,
        }
    }

    /// The exit span of one statement; a no-op span outside any trace. An empty `sql` leaves
    /// `db.statement` out (a commit has none). `parameters`, if any, is called only when the
    /// span records and its trace keeps parameters, with that trace's limit in bytes.
    pub(crate) fn start<P>(&self, operation: &'static str, sql: &str, parameters: Option<P>) -> Span
    where
        P: FnOnce(usize) -> String,
    {
        let span = Span::exit(operation, "");
        if span.is_recording() {
            span.set_peer(self.peer.clone());
            span.set_layer(SpanLayer::Database);
            span.set_component(self.component);
            span.add_tag("db.type", "sql");
            span.add_tag("db.instance", self.instance.clone());
            if !sql.is_empty() {
                span.add_tag("db.statement", statement(sql, self.statement_max_len));
            }
            if let Some(parameters) = parameters {
                // Read only for a statement with values: it costs a look at the current span.
                let max = parameters_max_length();
                if max > 0 {
                    span.add_tag("db.sql.parameters", parameters(max));
                }
            }
        }
        span
    }

    /// [`Endpoint::start`] for a statement without values.
    #[allow(dead_code)] // not used by sqlx, which is compiled alone too
    pub(crate) fn start_plain(&self, operation: &'static str, sql: &str) -> Span {
        self.start(operation, sql, None::<fn(usize) -> String>)
    }
}

/// The recording trace's `sql_parameters_max_length`; 0 outside a recording trace.
pub(crate) fn parameters_max_length() -> usize {
    crate::context::recording_settings(|s| s.sql_parameters_max_length).unwrap_or(0)
}

/// `sql` as `db.statement` has it: cut at `max` bytes, and then marked `...` as the Java agent
/// marks it.
pub(crate) fn statement(sql: &str, max: usize) -> String {
    let kept = cut(sql, max);
    if kept.len() == sql.len() {
        return sql.to_owned();
    }
    let mut statement = String::with_capacity(kept.len() + 3);
    statement.push_str(kept);
    statement.push_str("...");
    statement
}

/// Bound values as the Java and Python agents write them: `[v1,v2]`, cut at `max` bytes and
/// marked `...` when cut. Never holds more than `max` bytes of text, however large a value's
/// `Debug` output would be. (diesel prints its values itself.)
#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "tokio-postgres"
    )),
    allow(dead_code)
)]
pub(crate) struct ParameterText {
    text: String,
    max: usize,
    count: usize,
    full: bool,
}

#[cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "tokio-postgres"
    )),
    allow(dead_code)
)]
impl ParameterText {
    pub(crate) fn new(max: usize) -> ParameterText {
        ParameterText {
            text: String::new(),
            max,
            count: 0,
            full: false,
        }
    }

    /// The text of `values`, finished at `max` bytes.
    #[allow(dead_code)] // not used by sqlx, which is compiled alone too
    pub(crate) fn of<'v>(
        values: impl IntoIterator<Item = &'v dyn fmt::Debug>,
        max: usize,
    ) -> String {
        let mut text = ParameterText::new(max);
        for value in values {
            text.push(value);
        }
        text.finish(max)
    }

    /// The text so far, without brackets.
    #[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn push(&mut self, value: &dyn fmt::Debug) {
        if self.full {
            return;
        }
        let mut out = Bounded {
            text: &mut self.text,
            max: self.max,
        };
        let separator = if self.count > 0 { "," } else { "" };
        self.count += 1;
        // An error is the writer saying the text is full (or a `Debug` impl failing, after
        // which the text is cut there too).
        if out.write_str(separator).is_err() || write!(out, "{value:?}").is_err() {
            self.full = true;
        }
    }

    /// The tag's value, the text cut again at `max` bytes (the recording trace's limit, which
    /// may be lower than the one the values were kept with).
    pub(crate) fn finish(self, max: usize) -> String {
        let kept = cut(&self.text, max);
        let more = if self.full || kept.len() < self.text.len() {
            "..."
        } else {
            ""
        };
        format!("[{kept}{more}]")
    }
}

/// A writer that stops at `max` bytes: it keeps what fits (to a character boundary) and then
/// fails, which ends the `Debug` formatting early.
struct Bounded<'a> {
    text: &'a mut String,
    max: usize,
}

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            Ok(())
        } else {
            self.text.push_str(cut(s, room));
            Err(fmt::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ParameterText, statement};

    fn text(max: usize, values: &[&dyn std::fmt::Debug]) -> String {
        ParameterText::of(values.iter().copied(), max)
    }

    #[test]
    fn parameters_are_written_as_the_other_agents_do() {
        assert_eq!(text(512, &[]), "[]");
        assert_eq!(
            text(512, &[&7_i64, &"Ada", &None::<i32>]),
            r#"[7,"Ada",None]"#
        );
        // Cut inside a value, and at the separator.
        assert_eq!(text(4, &[&12345_i64, &6]), "[1234...]");
        assert_eq!(text(5, &[&12345_i64, &6]), "[12345...]");
        assert_eq!(text(7, &[&12345_i64, &6]), "[12345,6]");
        assert_eq!(text(3, &[&"é€"]), r#"["é...]"#);
        // Cut again, shorter, by the recording trace's own limit.
        let mut kept = ParameterText::new(64);
        kept.push(&123_456);
        assert_eq!(kept.finish(3), "[123...]");
    }

    #[test]
    fn a_huge_value_is_never_formatted_whole() {
        struct Endless;
        impl std::fmt::Debug for Endless {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // Stops at the first write that fails, as `Debug` impls do with `?`.
                loop {
                    f.write_str("0123456789")?;
                }
            }
        }
        assert_eq!(text(15, &[&1, &Endless]), "[1,0123456789012...]");
    }

    #[test]
    fn statements_are_cut_and_marked() {
        assert_eq!(statement("SELECT 1", 64), "SELECT 1");
        assert_eq!(statement("SELECT 1 WHERE false", 12), "SELECT 1 WHE...");
        assert_eq!(statement("SELECT 'é'", 9), "SELECT '...");
    }
}

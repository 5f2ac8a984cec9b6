//! diesel (feature `diesel`, diesel 2.2 and later; diesel-async 0.5 and later too): an exit
//! span per query, through diesel's own [`Instrumentation`] hook.
//!
//! Install it once, before connections are made; every connection made afterwards (by
//! `establish`, by an r2d2 / deadpool / bb8 pool, sync or diesel-async) reports its queries:
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! diesel::connection::set_default_instrumentation(skytrace::integrations::diesel::instrumentation)?;
//! # Ok(()) }
//! ```
//!
//! A connection made before, or with an instrumentation of its own, takes one by hand:
//! `conn.set_instrumentation(DieselInstrumentation::for_url(&url))` (the URL tells where the
//! queries go; the password in it is never kept).
//!
//! Each query is a span named `PostgreSQL/diesel/query` (`Mysql/diesel/query` for MySQL and
//! MariaDB: the database as the Java agent's JDBC plugin spells it), never after the SQL (OAP
//! would see one endpoint per statement); the statements diesel runs for a transaction are
//! `…/diesel/begin`, `…/diesel/commit` and `…/diesel/rollback` (savepoints included). It is a
//! child of the current span with layer Database, component `PostgreSQL` (22) or `Mysql` (5),
//! peer = the `host:port` of the connection URL (or its socket), and the tags `db.type` =
//! `sql`, `db.instance` = the database, `db.statement` = the SQL cut at
//! [`DEFAULT_STATEMENT_MAX_LEN`] bytes, and, with `SW_AGENT_SQL_PARAMETERS_MAX_LENGTH` (or
//! [`crate::TraceSettings::sql_parameters_max_length`]) above 0, `db.sql.parameters` = the
//! bound values as diesel prints them (`[7, "Ada"]`), cut at that many bytes. A failed query
//! marks the span as failed and logs diesel's error.
//!
//! The span belongs to the trace current where diesel runs the query: a sync connection used
//! inside `spawn_blocking` is on a thread with no current span unless the trace is carried
//! there ([`crate::snapshot`] and `continue_span`). Outside any trace nothing is recorded and
//! the query is not formatted. Connections to other databases (SQLite) are not traced.

use std::borrow::Cow;
use std::fmt::Write as _;

use ::diesel::connection::{Instrumentation, InstrumentationEvent};

use super::sql::{self, Endpoint};
use crate::component;
use crate::span::Span;

pub use super::sql::DEFAULT_STATEMENT_MAX_LEN;

/// Spans waiting for their query to finish, at most: diesel-async pipelines queries on one
/// connection; a query whose end never comes (a dropped future) must not hold spans forever.
const MAX_PENDING: usize = 64;

/// What diesel prints between a query's SQL and its bound values.
const BINDS: &str = " -- binds: ";

/// The span names of one database: a query, and the statements of a transaction.
#[derive(Clone, Copy, Debug)]
struct Names {
    query: &'static str,
    begin: &'static str,
    commit: &'static str,
    rollback: &'static str,
}

const POSTGRESQL: Names = Names {
    query: "PostgreSQL/diesel/query",
    begin: "PostgreSQL/diesel/begin",
    commit: "PostgreSQL/diesel/commit",
    rollback: "PostgreSQL/diesel/rollback",
};

const MYSQL: Names = Names {
    query: "Mysql/diesel/query",
    begin: "Mysql/diesel/begin",
    commit: "Mysql/diesel/commit",
    rollback: "Mysql/diesel/rollback",
};

/// The constructor to hand to [`diesel::connection::set_default_instrumentation`][set]: a fresh
/// [`DieselInstrumentation`] for each new connection.
///
// A URL, not an intra-doc link: diesel declares the function only with a backend feature on,
// and the `diesel` feature alone turns none on.
/// [set]: https://docs.rs/diesel/2/diesel/connection/fn.set_default_instrumentation.html
///
/// ```no_run
/// diesel::connection::set_default_instrumentation(skytrace::integrations::diesel::instrumentation)
///     .expect("diesel's instrumentation lock");
/// ```
pub fn instrumentation() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(DieselInstrumentation::new()))
}

/// A connection's [`Instrumentation`]: its queries become exit spans. See the
/// [module documentation](self).
///
/// ```
/// use skytrace::integrations::diesel::DieselInstrumentation;
///
/// let instrumentation = DieselInstrumentation::for_url("postgres://app:secret@db:6432/shop");
/// assert_eq!(instrumentation.peer(), Some("db:6432"));
/// assert_eq!(instrumentation.instance(), Some("shop"));
/// ```
#[derive(Debug, Default)]
pub struct DieselInstrumentation {
    /// Where the queries go; `None` until the connection's URL is seen, and for databases
    /// that are not traced.
    target: Option<(Endpoint, Names)>,
    /// What the next query is, when a transaction event announced it.
    next: Option<Next>,
    /// Spans of queries started and not finished, oldest first, with their SQL.
    pending: Vec<(Span, String)>,
}

#[derive(Clone, Copy, Debug)]
enum Next {
    Begin,
    Commit,
    Rollback,
}

impl DieselInstrumentation {
    /// An instrumentation that learns where the queries go when the connection is
    /// established (what [`instrumentation`] makes).
    pub fn new() -> DieselInstrumentation {
        DieselInstrumentation::default()
    }

    /// An instrumentation for a connection established with `url`, for
    /// `Connection::set_instrumentation` on a connection that exists already.
    pub fn for_url(url: &str) -> DieselInstrumentation {
        DieselInstrumentation {
            target: target_of(url),
            ..DieselInstrumentation::default()
        }
    }

    /// Keeps at most `len` bytes of SQL in `db.statement` (cut at a character boundary).
    pub fn with_statement_max_len(mut self, len: usize) -> DieselInstrumentation {
        if let Some((endpoint, _)) = &mut self.target {
            endpoint.statement_max_len = len;
        }
        self
    }

    /// The spans' peer, once known.
    pub fn peer(&self) -> Option<&str> {
        self.target.as_ref().map(|(e, _)| e.peer.as_str())
    }

    /// The `db.instance` tag, once known.
    pub fn instance(&self) -> Option<&str> {
        self.target.as_ref().map(|(e, _)| e.instance.as_str())
    }

    fn start_query(&mut self, query: &dyn ::diesel::connection::DebugQuery) {
        let next = self.next.take();
        let Some((endpoint, names)) = &self.target else {
            return;
        };
        let name = match next {
            None => names.query,
            Some(Next::Begin) => names.begin,
            Some(Next::Commit) => names.commit,
            Some(Next::Rollback) => names.rollback,
        };
        // Made before the query is formatted: outside a trace, nothing more is done.
        let span = endpoint.start_plain(name, "");
        if !span.is_recording() {
            return;
        }
        let text = query.to_string();
        let (statement, binds) = split_binds(&text);
        span.add_tag(
            "db.statement",
            sql::statement(statement, endpoint.statement_max_len),
        );
        if let Some(binds) = binds.filter(|b| *b != "[]") {
            let max = sql::parameters_max_length();
            if max > 0 {
                span.add_tag("db.sql.parameters", parameters(binds, max));
            }
        }
        if self.pending.len() == MAX_PENDING {
            // Ends the oldest: its query's end was lost.
            drop(self.pending.remove(0));
        }
        let len = statement.len();
        let mut statement = text;
        statement.truncate(len);
        self.pending.push((span, statement));
    }

    fn finish_query(
        &mut self,
        query: &dyn ::diesel::connection::DebugQuery,
        error: Option<&::diesel::result::Error>,
    ) {
        let index = match self.pending.len() {
            0 => return,
            // One query at a time, as on a sync connection: it is this one.
            1 => 0,
            // Pipelined: the one with this SQL, else the oldest.
            _ => {
                let text = query.to_string();
                let (statement, _) = split_binds(&text);
                self.pending
                    .iter()
                    .position(|(_, sql)| sql == statement)
                    .unwrap_or(0)
            }
        };
        let (span, _) = self.pending.remove(index);
        if let Some(error) = error {
            span.record_error(error);
        }
    }
}

impl Instrumentation for DieselInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } if self.target.is_none() => {
                self.target = target_of(url);
            }
            InstrumentationEvent::StartQuery { query, .. } => self.start_query(query),
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                self.finish_query(query, error)
            }
            InstrumentationEvent::BeginTransaction { .. } => self.next = Some(Next::Begin),
            InstrumentationEvent::CommitTransaction { .. } => self.next = Some(Next::Commit),
            InstrumentationEvent::RollbackTransaction { .. } => self.next = Some(Next::Rollback),
            _ => {}
        }
    }
}

/// A query as diesel prints it, `{sql} -- binds: [{values}]`, split in two; plain SQL (a
/// `batch_execute`) has no values.
fn split_binds(text: &str) -> (&str, Option<&str>) {
    match text.rfind(BINDS) {
        Some(at) if text.ends_with(']') => (&text[..at], Some(&text[at + BINDS.len()..])),
        _ => (text, None),
    }
}

/// diesel's `[v1, v2]` as `db.sql.parameters`, cut at `max` bytes of values (the brackets
/// kept, `...` marking a cut, as the other SQL integrations write it).
fn parameters(binds: &str, max: usize) -> String {
    let inner = binds
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(binds);
    let kept = crate::boundary::cut(inner, max);
    let mut text = String::with_capacity(kept.len() + 5);
    text.push('[');
    text.push_str(kept);
    if kept.len() < inner.len() {
        text.push_str("...");
    }
    text.push(']');
    text
}

/// Where a connection URL's queries go, for the databases traced: PostgreSQL (a URL or a
/// `key=value` string, as libpq takes), MySQL and MariaDB.
fn target_of(url: &str) -> Option<(Endpoint, Names)> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        // libpq's `host=… dbname=…` form.
        return Some(conninfo(url));
    };
    let (names, component, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => (POSTGRESQL, component::POSTGRESQL, 5432),
        "mysql" | "mariadb" => (MYSQL, component::MYSQL, 3306),
        _ => return None,
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => {
            let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
            (decode(user), hosts)
        }
        None => (Cow::Borrowed(""), authority),
    };
    let mut database = decode(database);
    let mut user = user;
    let mut peer: Option<String> = None;
    let (mut socket_host, mut port_param) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value);
        match key {
            // PostgreSQL: a socket directory or a host given as a parameter.
            "host" => socket_host = Some(value.into_owned()),
            "port" => port_param = value.parse::<u16>().ok(),
            "dbname" => database = value,
            "user" => user = value,
            // MySQL / MariaDB: the socket.
            "unix_socket" | "socket" => peer = Some(value.into_owned()),
            _ => {}
        }
    }
    let peer = peer.unwrap_or_else(|| match socket_host {
        Some(host) if host.starts_with('/') => {
            format!("{host}/.s.PGSQL.{}", port_param.unwrap_or(default_port))
        }
        Some(host) => join_hosts(&host, port_param.unwrap_or(default_port)),
        None => join_hosts(&decode(hosts), port_param.unwrap_or(default_port)),
    });
    let instance = if database.is_empty() && component == component::POSTGRESQL {
        // PostgreSQL's default database is the user's name.
        user.into_owned()
    } else {
        database.into_owned()
    };
    Some((Endpoint::new(peer, instance, component), names))
}

/// `host[:port]` items, comma-separated (IPv6 in brackets), each with its port.
fn join_hosts(hosts: &str, default_port: u16) -> String {
    let mut peer = String::new();
    for host in hosts.split(',') {
        let host = host.trim();
        let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
            match bracketed.split_once(']') {
                Some((name, rest)) => (name, rest.strip_prefix(':')),
                None => (host, None),
            }
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            }
        };
        let name = if name.is_empty() { "localhost" } else { name };
        let port = port
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(default_port);
        if !peer.is_empty() {
            peer.push(',');
        }
        if name.contains(':') {
            let _ = write!(peer, "[{name}]:{port}");
        } else {
            let _ = write!(peer, "{name}:{port}");
        }
    }
    peer
}

/// libpq's `key=value` connection string (values optionally in single quotes).
fn conninfo(text: &str) -> (Endpoint, Names) {
    let (mut host, mut port, mut database, mut user) = (None, None, None, None);
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('\'') {
            quoted.split_once('\'').unwrap_or((quoted, ""))
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        match key.trim() {
            "host" | "hostaddr" => host = Some(value),
            "port" => port = value.split(',').next().and_then(|p| p.parse::<u16>().ok()),
            "dbname" => database = Some(value),
            "user" => user = Some(value),
            _ => {}
        }
        rest = next.trim_start();
    }
    let port = port.unwrap_or(5432);
    let peer = match host {
        Some(dir) if dir.starts_with('/') => format!("{dir}/.s.PGSQL.{port}"),
        Some(hosts) => join_hosts(hosts, port),
        None => format!("localhost:{port}"),
    };
    let instance = database.or(user).unwrap_or("").to_owned();
    (
        Endpoint::new(peer, instance, component::POSTGRESQL),
        POSTGRESQL,
    )
}

/// `%xx` escapes decoded (a malformed one kept as is).
fn decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Option<(String, String, i32, &'static str)> {
        target_of(url).map(|(e, n)| (e.peer, e.instance, e.component, n.query))
    }

    fn t(
        peer: &str,
        instance: &str,
        component: i32,
        query: &'static str,
    ) -> Option<(String, String, i32, &'static str)> {
        Some((peer.to_owned(), instance.to_owned(), component, query))
    }

    #[test]
    fn urls_tell_the_peer_the_database_and_the_names() {
        let pg = "PostgreSQL/diesel/query";
        let my = "Mysql/diesel/query";
        assert_eq!(
            target("postgres://root@127.0.0.1:5432/test"),
            t("127.0.0.1:5432", "test", 22, pg)
        );
        assert_eq!(
            target("postgresql://app:p%40ss@db/shop?sslmode=disable"),
            t("db:5432", "shop", 22, pg)
        );
        // No database: the user's name, as PostgreSQL does.
        assert_eq!(
            target("postgres://app@db:6432"),
            t("db:6432", "app", 22, pg)
        );
        assert_eq!(target("postgres://u@a:1,b:2/d"), t("a:1,b:2", "d", 22, pg));
        assert_eq!(
            target("postgres://u@[::1]:5433/d"),
            t("[::1]:5433", "d", 22, pg)
        );
        assert_eq!(
            target("postgres:///d?host=/run/postgresql"),
            t("/run/postgresql/.s.PGSQL.5432", "d", 22, pg)
        );
        assert_eq!(
            target("host=db port=6432 user=u dbname='my db'"),
            t("db:6432", "my db", 22, pg)
        );
        assert_eq!(
            target("mysql://root@127.0.0.1:3306/test"),
            t("127.0.0.1:3306", "test", 5, my)
        );
        assert_eq!(
            target("mariadb://root@db/test"),
            t("db:3306", "test", 5, my)
        );
        assert_eq!(
            target("mysql://root@localhost/test?unix_socket=/run/mysqld/mysqld.sock"),
            t("/run/mysqld/mysqld.sock", "test", 5, my)
        );
        // Not traced.
        assert_eq!(target("sqlite://file.db"), None);
    }

    #[test]
    fn a_query_and_its_values_are_told_apart() {
        assert_eq!(
            split_binds(r#"SELECT "u"."id" FROM "u" WHERE "u"."id" = $1 -- binds: [7]"#),
            (
                r#"SELECT "u"."id" FROM "u" WHERE "u"."id" = $1"#,
                Some("[7]")
            )
        );
        assert_eq!(split_binds("BEGIN"), ("BEGIN", None));
        assert_eq!(parameters(r#"[7, "Ada"]"#, 64), r#"[7, "Ada"]"#);
        assert_eq!(parameters(r#"[7, "Ada"]"#, 4), "[7, \"...]");
        assert_eq!(parameters("[]", 4), "[]");
    }
}

//! Attribute macros of [skytrace]: `#[trace]`, `#[entry_span]` and `#[exit_span]`.
//!
//! Use them through the `skytrace` crate (`#[skytrace::trace]`), which re-exports them; the
//! generated code names `::skytrace::…`.
//!
//! # Build-time opt-in
//!
//! The macros instrument only when skytrace's Cargo feature `enable` is on. Without it every
//! attribute returns the item **token for token as written**: a library can annotate its
//! functions at no cost and the final application decides, by turning on `skytrace/enable`.
//!
//! The attribute and the item are parsed and checked in both modes, so a misuse (an unknown
//! option, `carrier` naming no argument, `#[trace]` on a `const fn`…) is the same compile error
//! with or without the feature. (Errors rustc finds in the generated code, such as `err` on a fn
//! that does not return a `Result`, or a tag value that is not `Display`, exist only with it.)
//!
//! Since the attribute disappears without the feature, an argument that only the attribute uses
//! (a `carrier`, a `peer`, a tag value) is then unused: use it in the body, or name it `_x`.
//!
//! # What a traced fn becomes
//!
//! The signature, attributes and body are kept; the body is run inside a span. For a plain fn,
//! a `LocalSpan`: recorded on the thread without a lock, current until the fn returns (the
//! tag values are evaluated inside it):
//!
//! ```ignore
//! #[skytrace::trace(tags(user.id = id))]
//! fn load(id: u64) -> Option<User> { /* body */ }
//!
//! // expands to
//! fn load(id: u64) -> Option<User> {
//!     let __skytrace_span = ::skytrace::LocalSpan::enter("load");
//!     {
//!         let __skytrace_tag_0: &dyn ::core::fmt::Display = &(id);
//!         if ::skytrace::LocalSpan::is_recording(&__skytrace_span) {
//!             ::skytrace::LocalSpan::add_tag(&__skytrace_span, "user.id",
//!                 ::std::string::ToString::to_string(__skytrace_tag_0));
//!         }
//!     }
//!     { /* body */ }
//! }
//! ```
//!
//! For an `async fn` the body is wrapped, not rewritten: it becomes an `async move` block that
//! runs inside the span, and a never-taken `return` of the declared type keeps `?` and `return`
//! inferring as before:
//!
//! ```ignore
//! #[skytrace::trace(err)]
//! async fn fetch(url: &str) -> Result<Page, Error> { /* body */ }
//!
//! // expands to
//! async fn fetch(url: &str) -> Result<Page, Error> {
//!     let __skytrace_span = ::skytrace::Span::local("fetch");
//!     ::skytrace::Instrument::in_span(
//!         async move {
//!             let __skytrace_ret = async move {
//!                 if let Some(__skytrace_fake) = None::<Result<Page, Error>> {
//!                     return __skytrace_fake;
//!                 }
//!                 { /* body */ }
//!             }
//!             .await;
//!             // `err`: a `Result`'s error is recorded (on another type, an error at `err`).
//!             ::skytrace::__private::record_err(&__skytrace_ret);
//!             __skytrace_ret
//!         },
//!         __skytrace_span,
//!     )
//!     .await
//! }
//! ```
//!
//! `in_span` enters the span around every poll, ends it when the future completes, tags it
//! `cancelled=true` when the future is dropped first, and marks it as error when a poll panics.
//!
//! [skytrace]: https://docs.rs/skytrace

mod ast;
mod attr;
mod expand;

use proc_macro::TokenStream;

const ENABLED: bool = cfg!(feature = "enable");

/// Records a **local span** around a fn: the operation name is the fn's name.
///
/// ```
/// #[skytrace::trace]
/// fn parse(input: &str) -> usize {
///     input.len()
/// }
///
/// #[skytrace::trace(name = "load user", tags(user.id = id), err)]
/// async fn load_user(id: u64) -> Result<String, std::fmt::Error> {
///     Ok(format!("user {id}"))
/// }
/// # assert_eq!(parse("abc"), 3);
/// ```
///
/// With no active trace the span is a no-op: no allocation, no clock read.
///
/// # Where it goes
///
/// - free fns, methods with any receiver (`self`, `&self`, `&mut self`, `self: Box<Self>`,
///   `self: Pin<&mut Self>`), generic fns with where-clauses and lifetimes, `unsafe fn`, fns in
///   trait impls and trait default methods; attributes such as `#[must_use]`, docs and `cfg`s
///   are kept;
/// - `async fn`: the body runs inside the span, which starts at the first poll;
/// - a fn whose body ends in an `async` block, or in `Box::pin(async move { … })` as
///   `async-trait` generates: the span goes *inside* the block, so it covers the async work,
///   not the boxing;
/// - a fn declared `-> impl Future<…>` whose body builds the future another way: the returned
///   future is wrapped, and the span runs from the call until the future completes.
///
/// Not on a `const fn`, nor on a fn without a body.
///
/// # Options
///
/// | option | effect |
/// |---|---|
/// | `name = "…"` | the operation name (default: the fn's name, or `Type::method`, see below) |
/// | `tags(key = expr, …)` | tags; each `expr` is evaluated once, at entry, by reference, and formatted with `Display` only when the span records. Keys are dotted identifiers (`http.method`, `db.type`) or string literals |
/// | `err` | when the fn returns `Err(e)`, marks the span as error and logs `e`'s `Display` (`event=error`, `message=…`); the return type must be a `Result` |
/// | `layer = Http` | the span layer: `Unknown`, `Database`, `RpcFramework`, `Http`, `Mq`, `Cache` or `Faas` |
/// | `component = …` | the component id: an integer (`component = 49`), a constant of `skytrace::component` by name (`component = HTTP`), or any constant path (`component = my::ID`) |
/// | `skip_analysis` | asks OAP not to analyse the span |
///
/// # `Type::method` names
///
/// Put `#[trace]` on the `impl` block (or the `trait`) too: every method in it that carries
/// `#[trace]`, `#[entry_span]` or `#[exit_span]` without a `name` is named `Type::method`
/// (`Trait::method` for default methods); the type is the last segment of the self type, without
/// generics (`impl<T> Repo<T>` → `Repo`). The block's own `#[trace]` takes no options and traces
/// nothing by itself. The methods' attributes are recognized by name (`trace`, `entry_span`,
/// `exit_span`, alone or as `skytrace::…`) and must be written on the methods, not produced by
/// `cfg_attr`. It works above or below `#[async_trait]`.
///
/// ```
/// struct Cache;
///
/// #[skytrace::trace]
/// impl Cache {
///     #[skytrace::trace] // named "Cache::get"
///     fn get(&self, key: &str) -> Option<String> {
///         None
///     }
///
///     #[skytrace::trace(name = "evict")] // keeps its name
///     fn evict(&mut self) {}
///
///     fn helper(&self) {} // not traced
/// }
/// # let _ = Cache.get("k");
/// ```
///
/// # Misuse
///
/// Unknown, duplicate or ill-typed options, and `#[trace]` on something that is not a fn, are
/// compile errors pointing at the offending token, with or without the `enable` feature.
#[proc_macro_attribute]
pub fn trace(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::trace(attr.into(), item.into(), ENABLED).into()
}

/// Records an **entry span**: a request entering this service. The span is the first of its
/// segment; when it ends, the segment is reported.
///
/// `carrier = arg` names the argument that holds the incoming headers: anything implementing
/// `skytrace::Extractor` (`http::HeaderMap`, `http::Request<_>`, `HashMap<String, String>`,
/// tonic types behind skytrace's `tonic` feature, a reference to any of them, or your own type).
/// The span continues the caller's trace from its `sw8` header (and `sw8-correlation`), with a
/// `CrossProcess` reference; with no valid header, or without `carrier`, it starts a new trace
/// (for jobs, consumers and main loops). Inside an already active trace it is a child span.
///
/// ```
/// use std::collections::HashMap;
///
/// #[skytrace::entry_span(name = "GET:/users/{id}", carrier = headers, layer = Http, component = 49)]
/// async fn get_user(headers: &HashMap<String, String>, id: u64) -> String {
///     format!("user {id}")
/// }
///
/// #[skytrace::entry_span] // a job: starts its own trace
/// fn nightly_cleanup() {}
/// # nightly_cleanup();
/// ```
///
/// Options: `name = "…"` (the endpoint; default the fn's name), `carrier = arg`, `peer = expr`
/// (the client's address, formatted with `Display` when recorded), and `tags(…)`, `err`,
/// `layer`, `component`, `skip_analysis` as for [`macro@trace`].
#[proc_macro_attribute]
pub fn entry_span(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry_span(attr.into(), item.into(), ENABLED).into()
}

/// Records an **exit span** around a fn that makes an outgoing call. Inside it,
/// `skytrace::inject(&mut headers)` writes the `sw8` headers to put on the outgoing request, so
/// the callee's entry span links back to this one.
///
/// ```
/// use std::collections::HashMap;
///
/// #[skytrace::exit_span(peer = "inventory:8080", name = "GET:/stock", layer = Http, component = 49)]
/// fn check_stock(item: u64) -> HashMap<String, String> {
///     let mut headers = HashMap::new();
///     skytrace::inject(&mut headers); // sw8 for this exit span, when a trace is active
///     // … send the request with `headers` …
///     headers
/// }
/// # check_stock(1);
/// ```
///
/// Options: `peer = expr` (required: the address dialled, e.g. `"db:5432"`, or any expression
/// implementing `Display`, such as `peer = self.addr`, formatted only when a trace is active),
/// and `name`, `tags(…)`, `err`, `layer`, `component`, `skip_analysis` as for [`macro@trace`].
#[proc_macro_attribute]
pub fn exit_span(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::exit_span(attr.into(), item.into(), ENABLED).into()
}

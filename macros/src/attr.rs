//! The attribute's options: `#[trace(name = "…", tags(k = v, …), err, …)]`.
//!
//! Every option is parsed with syn's `Parse`; a bad option does not stop the parse: its error is
//! kept, the tokens up to the next top-level `,` are skipped, and the remaining options are still
//! checked, so one compile reports every mistake, each at its own token.

use std::fmt::{self, Display};

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Error, Expr, ExprLit, Ident, Lit, LitInt, LitStr, Path, Result, Token, parenthesized};

/// Which attribute is being parsed: decides the options it accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `#[trace]`: a local span.
    Trace,
    /// `#[entry_span]`: where a request enters this service.
    Entry,
    /// `#[exit_span]`: an outgoing call.
    Exit,
}

impl Kind {
    /// The attribute's name as users write it.
    pub fn attr_name(self) -> &'static str {
        match self {
            Kind::Trace => "trace",
            Kind::Entry => "entry_span",
            Kind::Exit => "exit_span",
        }
    }

    fn accepts(self, option: Opt) -> bool {
        match option {
            Opt::Name | Opt::Tags | Opt::Err | Opt::Layer | Opt::Component | Opt::SkipAnalysis => {
                true
            }
            Opt::Peer => matches!(self, Kind::Entry | Kind::Exit),
            Opt::Carrier => self == Kind::Entry,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Trace => "name, tags, err, layer, component, skip_analysis",
            Kind::Entry => "name, carrier, peer, tags, err, layer, component, skip_analysis",
            Kind::Exit => "name, peer, tags, err, layer, component, skip_analysis",
        }
    }
}

impl Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "#[{}]", self.attr_name())
    }
}

/// The options, as the user wrote them. The tokens are kept for their spans.
#[derive(Default)]
pub struct Args {
    /// `name = "…"`: the operation name.
    pub name: Option<LitStr>,
    /// `tags(key = expr, …)`.
    pub tags: Vec<Tag>,
    /// `err`: the keyword itself, to point errors of the generated check at it.
    pub err: Option<Ident>,
    /// `layer = Http`: a variant of `skytrace::SpanLayer`.
    pub layer: Option<Ident>,
    /// `component = 49` or `component = HTTP` or `component = my::CONST`.
    pub component: Option<Component>,
    /// `skip_analysis`.
    pub skip_analysis: Option<Ident>,
    /// `peer = expr` (`#[entry_span]`, `#[exit_span]`).
    pub peer: Option<Expr>,
    /// `carrier = arg` (`#[entry_span]`): the argument that holds the incoming headers.
    pub carrier: Option<Ident>,
}

impl Args {
    /// True when no option was given.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.tags.is_empty()
            && self.err.is_none()
            && self.layer.is_none()
            && self.component.is_none()
            && self.skip_analysis.is_none()
            && self.peer.is_none()
            && self.carrier.is_none()
    }

    /// The peer when it is written as a string literal (passed as is, never formatted).
    pub fn peer_literal(&self) -> Option<&LitStr> {
        match &self.peer {
            Some(Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            })) => Some(lit),
            _ => None,
        }
    }
}

/// One `key = value` of `tags(…)`.
pub struct Tag {
    /// The key: a string literal or dotted identifiers (`http.method`, `db.type`).
    pub key: String,
    /// The key as written, for error spans.
    pub key_tokens: TokenStream,
    pub value: Expr,
}

impl Tag {
    /// Where the key starts (the span of a generated literal).
    pub fn key_span(&self) -> Span {
        self.key_tokens
            .clone()
            .into_iter()
            .next()
            .map_or_else(Span::call_site, |tt| tt.span())
    }
}

/// `component = …`.
pub enum Component {
    /// An integer literal: the id itself.
    Id(LitInt),
    /// A single identifier: a constant of `skytrace::component`.
    Known(Ident),
    /// A path of two or more segments: a constant of the user's, used as written.
    Path(Path),
}

/// The variants of `skytrace::SpanLayer`.
pub const LAYERS: &[&str] = &[
    "Unknown",
    "Database",
    "RpcFramework",
    "Http",
    "Mq",
    "Cache",
    "Faas",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    Name,
    Tags,
    Err,
    Layer,
    Component,
    SkipAnalysis,
    Peer,
    Carrier,
}

impl Opt {
    fn from_ident(ident: &Ident) -> Option<Opt> {
        Some(match ident.to_string().as_str() {
            "name" => Opt::Name,
            "tags" => Opt::Tags,
            "err" => Opt::Err,
            "layer" => Opt::Layer,
            "component" => Opt::Component,
            "skip_analysis" => Opt::SkipAnalysis,
            "peer" => Opt::Peer,
            "carrier" => Opt::Carrier,
            _ => return None,
        })
    }

    fn not_for(self, kind: Kind) -> String {
        match self {
            Opt::Peer => format!(
                "`peer` is not an option of {kind}: a local span has no peer; \
                 use #[exit_span(peer = …)] for an outgoing call"
            ),
            Opt::Carrier => format!(
                "`carrier` is not an option of {kind}: only #[entry_span] continues a trace \
                 from incoming headers"
            ),
            _ => unreachable!("every attribute accepts the other options"),
        }
    }
}

/// Collects errors so that one compile reports all of them.
#[derive(Default)]
pub struct Errors(Option<Error>);

impl Errors {
    pub fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn push_result<T>(&mut self, result: Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn finish<T>(self, value: T) -> Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

/// Parses the tokens inside `#[attr(…)]`.
pub fn parse(kind: Kind, tokens: TokenStream) -> Result<Args> {
    let parser = |input: ParseStream| parse_args(kind, input);
    parser.parse2(tokens)
}

fn parse_args(kind: Kind, input: ParseStream) -> Result<Args> {
    let mut args = Args::default();
    let mut errors = Errors::default();
    while !input.is_empty() {
        if let Err(error) = parse_option(kind, input, &mut args) {
            errors.push(error);
            skip_to_comma(input);
        }
        if input.is_empty() {
            break;
        }
        if let Err(error) = input.parse::<Token![,]>() {
            errors.push(error);
            skip_to_comma(input);
            let _ = input.parse::<Option<Token![,]>>();
        }
    }
    if kind == Kind::Exit && args.peer.is_none() {
        errors.push(Error::new(
            Span::call_site(),
            "#[exit_span] needs `peer = …`: the address the call dials, e.g. \
             #[exit_span(peer = \"db:5432\")]",
        ));
    }
    errors.finish(args)
}

/// Skips tokens up to (not including) the next top-level `,`.
fn skip_to_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            match tt {
                TokenTree::Punct(punct) if punct.as_char() == ',' => break,
                _ => rest = next,
            }
        }
        Ok(((), rest))
    });
}

fn parse_option(kind: Kind, input: ParseStream, args: &mut Args) -> Result<()> {
    let key = input.call(Ident::parse_any).map_err(|error| {
        Error::new(
            error.span(),
            format!("expected an option of {kind}: one of {}", kind.expected()),
        )
    })?;
    let Some(option) = Opt::from_ident(&key) else {
        return Err(Error::new_spanned(
            &key,
            format!(
                "unknown option `{key}` for {kind}; expected one of: {}",
                kind.expected()
            ),
        ));
    };
    if !kind.accepts(option) {
        return Err(Error::new_spanned(&key, option.not_for(kind)));
    }
    let duplicate = || Error::new_spanned(&key, format!("duplicate option `{key}`"));
    match option {
        Opt::Name => {
            let value = parse_name(input, &key)?;
            set_once(&mut args.name, value).map_err(|_| duplicate())
        }
        Opt::Tags => {
            let tags = parse_tags(input, &key)?;
            if !args.tags.is_empty() {
                return Err(Error::new_spanned(
                    &key,
                    "duplicate option `tags`: list every tag in one `tags(…)`",
                ));
            }
            args.tags = tags;
            Ok(())
        }
        Opt::Err => {
            flag(input, &key)?;
            set_once(&mut args.err, key.clone()).map_err(|_| duplicate())
        }
        Opt::SkipAnalysis => {
            flag(input, &key)?;
            set_once(&mut args.skip_analysis, key.clone()).map_err(|_| duplicate())
        }
        Opt::Layer => {
            let value = parse_layer(input, &key)?;
            set_once(&mut args.layer, value).map_err(|_| duplicate())
        }
        Opt::Component => {
            let value = parse_component(input, &key)?;
            set_once(&mut args.component, value).map_err(|_| duplicate())
        }
        Opt::Peer => {
            eq(
                input,
                &key,
                "an expression: the address dialled, e.g. `peer = \"db:5432\"`",
            )?;
            let value: Expr = input.parse()?;
            set_once(&mut args.peer, value).map_err(|_| duplicate())
        }
        Opt::Carrier => {
            eq(
                input,
                &key,
                "the name of the argument that holds the incoming headers",
            )?;
            let value: Expr = input.parse()?;
            let value = match &value {
                Expr::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
                _ => None,
            }
            .ok_or_else(|| {
                Error::new_spanned(
                    &value,
                    "`carrier` takes the name of an argument, not an expression, \
                     e.g. `carrier = headers`",
                )
            })?;
            set_once(&mut args.carrier, value).map_err(|_| duplicate())
        }
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> std::result::Result<(), ()> {
    if slot.is_some() {
        return Err(());
    }
    *slot = Some(value);
    Ok(())
}

/// Expects `=` after `key`.
fn eq(input: ParseStream, key: &Ident, what: &str) -> Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        return Ok(());
    }
    let span = if input.is_empty() {
        key.span()
    } else {
        input.span()
    };
    Err(Error::new(span, format!("expected `{key} = …`: {what}")))
}

fn flag(input: ParseStream, key: &Ident) -> Result<()> {
    if input.is_empty() || input.peek(Token![,]) {
        return Ok(());
    }
    Err(Error::new_spanned(
        rest_of_option(input),
        format!("`{key}` is a flag and takes no value: write `{key}` alone"),
    ))
}

/// Consumes the tokens up to the next top-level `,`, to point an error at all of them.
fn rest_of_option(input: ParseStream) -> TokenStream {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        match input.parse::<TokenTree>() {
            Ok(tt) => tokens.extend([tt]),
            Err(_) => break,
        }
    }
    tokens
}

fn parse_name(input: ParseStream, key: &Ident) -> Result<LitStr> {
    eq(
        input,
        key,
        "a string literal, e.g. `name = \"GET:/users/{id}\"`",
    )?;
    let lit = string_literal(
        input,
        "`name` takes a string literal, e.g. `name = \"checkout\"`",
    )?;
    if lit.value().is_empty() {
        return Err(Error::new_spanned(&lit, "`name` must not be empty"));
    }
    Ok(lit)
}

fn string_literal(input: ParseStream, message: &str) -> Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    // Consume the wrong value so that the error spans it whole.
    let value: Expr = input.parse()?;
    Err(Error::new_spanned(value, message))
}

fn parse_tags(input: ParseStream, key: &Ident) -> Result<Vec<Tag>> {
    if !input.peek(syn::token::Paren) {
        let message =
            "expected `tags(key = value, …)`, e.g. `tags(user.id = id, http.method = \"GET\")`";
        if input.is_empty() || input.peek(Token![,]) {
            return Err(Error::new_spanned(key, message));
        }
        return Err(Error::new_spanned(rest_of_option(input), message));
    }
    let content;
    parenthesized!(content in input);
    let mut tags: Vec<Tag> = Vec::new();
    let mut errors = Errors::default();
    while !content.is_empty() {
        match parse_tag(&content) {
            Ok(tag) => {
                if tags.iter().any(|t| t.key == tag.key) {
                    errors.push(Error::new_spanned(
                        &tag.key_tokens,
                        format!("duplicate tag `{}`", tag.key),
                    ));
                }
                tags.push(tag);
            }
            Err(error) => {
                errors.push(error);
                skip_to_comma(&content);
            }
        }
        if content.is_empty() {
            break;
        }
        if let Err(error) = content.parse::<Token![,]>() {
            errors.push(error);
            skip_to_comma(&content);
            let _ = content.parse::<Option<Token![,]>>();
        }
    }
    errors.finish(tags)
}

fn parse_tag(input: ParseStream) -> Result<Tag> {
    let mut key_tokens = TokenStream::new();
    let key = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        if lit.value().is_empty() {
            return Err(Error::new_spanned(&lit, "a tag key must not be empty"));
        }
        lit.to_tokens(&mut key_tokens);
        lit.value()
    } else {
        let first = input.call(Ident::parse_any).map_err(|error| {
            Error::new(
                error.span(),
                "expected a tag key: dotted identifiers (`http.method`) or a string literal",
            )
        })?;
        let mut key = first.unraw().to_string();
        first.to_tokens(&mut key_tokens);
        while input.peek(Token![.]) {
            let dot: Token![.] = input.parse()?;
            let part = input.call(Ident::parse_any)?;
            key.push('.');
            key.push_str(&part.unraw().to_string());
            dot.to_tokens(&mut key_tokens);
            part.to_tokens(&mut key_tokens);
        }
        key
    };
    if !input.peek(Token![=]) {
        let message = format!("expected `{key} = value`: every tag needs a value");
        if input.is_empty() || input.peek(Token![,]) {
            return Err(Error::new_spanned(key_tokens, message));
        }
        return Err(Error::new(input.span(), message));
    }
    input.parse::<Token![=]>()?;
    let value: Expr = input.parse()?;
    Ok(Tag {
        key,
        key_tokens,
        value,
    })
}

fn parse_layer(input: ParseStream, key: &Ident) -> Result<Ident> {
    eq(input, key, &format!("one of {}", LAYERS.join(", ")))?;
    let value: Expr = input.parse()?;
    let ident = match &value {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
        _ => None,
    };
    let Some(ident) = ident else {
        return Err(Error::new_spanned(
            value,
            format!(
                "`layer` takes the name of a span layer: one of {}, e.g. `layer = Http`",
                LAYERS.join(", ")
            ),
        ));
    };
    let name = ident.to_string();
    if LAYERS.contains(&name.as_str()) {
        return Ok(ident);
    }
    let folded = name.replace('_', "").to_ascii_lowercase();
    let message = match LAYERS.iter().find(|l| l.to_ascii_lowercase() == folded) {
        Some(layer) => format!("unknown span layer `{name}`; did you mean `{layer}`?"),
        None => format!(
            "unknown span layer `{name}`; expected one of {}",
            LAYERS.join(", ")
        ),
    };
    Err(Error::new_spanned(ident, message))
}

fn parse_component(input: ParseStream, key: &Ident) -> Result<Component> {
    eq(
        input,
        key,
        "a component id: an integer or a constant, e.g. `component = HTTP` or `component = 49`",
    )?;
    let value: Expr = input.parse()?;
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => match lit.base10_parse::<i32>() {
            Ok(id) if id >= 0 && matches!(lit.suffix(), "" | "i32") => Ok(Component::Id(lit)),
            _ => Err(Error::new_spanned(
                lit,
                "a component id is a non-negative `i32`",
            )),
        },
        Expr::Path(path) if path.qself.is_none() => match path.path.get_ident() {
            Some(ident) => Ok(Component::Known(ident.clone())),
            None => Ok(Component::Path(path.path)),
        },
        other => Err(Error::new_spanned(
            other,
            "`component` takes an integer literal or the path of a constant, e.g. \
             `component = HTTP` (a constant of `skytrace::component`) or `component = 49`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn err(kind: Kind, tokens: TokenStream) -> Vec<String> {
        match parse(kind, tokens) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn parses_every_option() {
        let args = parse(
            Kind::Entry,
            quote!(
                name = "GET:/users",
                carrier = headers,
                peer = addr.to_string(),
                tags(http.method = "GET", db.type = 1, "status_code" = code),
                err,
                layer = Http,
                component = 49,
                skip_analysis,
            ),
        )
        .unwrap();
        assert_eq!(args.name.unwrap().value(), "GET:/users");
        assert_eq!(args.carrier.unwrap(), "headers");
        assert!(args.peer.is_some());
        let keys: Vec<_> = args.tags.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["http.method", "db.type", "status_code"]);
        assert!(args.err.is_some());
        assert_eq!(args.layer.unwrap(), "Http");
        assert!(matches!(args.component, Some(Component::Id(_))));
        assert!(args.skip_analysis.is_some());
    }

    #[test]
    fn empty_is_empty() {
        assert!(parse(Kind::Trace, quote!()).unwrap().is_empty());
    }

    #[test]
    fn component_forms() {
        let known = parse(Kind::Trace, quote!(component = HTTP)).unwrap();
        assert!(matches!(known.component, Some(Component::Known(_))));
        let path = parse(Kind::Trace, quote!(component = my::ID)).unwrap();
        assert!(matches!(path.component, Some(Component::Path(_))));
        assert_eq!(
            err(Kind::Trace, quote!(component = -1)),
            [
                "`component` takes an integer literal or the path of a constant, e.g. \
              `component = HTTP` (a constant of `skytrace::component`) or `component = 49`"
            ]
        );
        assert_eq!(
            err(Kind::Trace, quote!(component = 49u8)),
            ["a component id is a non-negative `i32`"]
        );
    }

    #[test]
    fn reports_every_error() {
        let errors = err(
            Kind::Trace,
            quote!(
                nme = "x",
                name = 42,
                err = true,
                layer = Htp,
                name = "a",
                name = "b"
            ),
        );
        assert_eq!(
            errors,
            [
                "unknown option `nme` for #[trace]; expected one of: name, tags, err, layer, \
                 component, skip_analysis",
                "`name` takes a string literal, e.g. `name = \"checkout\"`",
                "`err` is a flag and takes no value: write `err` alone",
                "unknown span layer `Htp`; expected one of Unknown, Database, RpcFramework, \
                 Http, Mq, Cache, Faas",
                "duplicate option `name`",
            ]
        );
    }

    #[test]
    fn layer_suggestion() {
        assert_eq!(
            err(Kind::Trace, quote!(layer = RPCFramework)),
            ["unknown span layer `RPCFramework`; did you mean `RpcFramework`?"]
        );
        assert_eq!(
            err(Kind::Trace, quote!(layer = "http")),
            [
                "`layer` takes the name of a span layer: one of Unknown, Database, RpcFramework, \
              Http, Mq, Cache, Faas, e.g. `layer = Http`"
            ]
        );
    }

    #[test]
    fn options_per_kind() {
        assert_eq!(
            err(Kind::Trace, quote!(peer = "x")),
            [
                "`peer` is not an option of #[trace]: a local span has no peer; use \
              #[exit_span(peer = …)] for an outgoing call"
            ]
        );
        assert_eq!(
            err(Kind::Exit, quote!(carrier = headers, peer = "x")),
            [
                "`carrier` is not an option of #[exit_span]: only #[entry_span] continues a trace \
              from incoming headers"
            ]
        );
        assert_eq!(
            err(Kind::Exit, quote!(name = "x")),
            [
                "#[exit_span] needs `peer = …`: the address the call dials, e.g. \
              #[exit_span(peer = \"db:5432\")]"
            ]
        );
        assert!(parse(Kind::Exit, quote!(peer = "db:5432")).is_ok());
    }

    #[test]
    fn tag_errors() {
        assert_eq!(
            err(Kind::Trace, quote!(tags(a = 1, a = 2, b))),
            [
                "duplicate tag `a`",
                "expected `b = value`: every tag needs a value"
            ]
        );
        assert_eq!(
            err(Kind::Trace, quote!(tags = 1)),
            ["expected `tags(key = value, …)`, e.g. `tags(user.id = id, http.method = \"GET\")`"]
        );
        assert_eq!(
            err(Kind::Trace, quote!(tags(a = 1), tags(b = 2))),
            ["duplicate option `tags`: list every tag in one `tags(…)`"]
        );
    }

    #[test]
    fn name_errors() {
        assert_eq!(
            err(Kind::Trace, quote!(name = "")),
            ["`name` must not be empty"]
        );
        assert_eq!(
            err(Kind::Trace, quote!(name)),
            ["expected `name = …`: a string literal, e.g. `name = \"GET:/users/{id}\"`"]
        );
    }

    #[test]
    fn carrier_errors() {
        assert_eq!(
            err(Kind::Entry, quote!(carrier = req.headers())),
            [
                "`carrier` takes the name of an argument, not an expression, e.g. \
              `carrier = headers`"
            ]
        );
        assert_eq!(
            err(Kind::Entry, quote!(carrier = "headers")),
            [
                "`carrier` takes the name of an argument, not an expression, e.g. \
              `carrier = headers`"
            ]
        );
    }

    #[test]
    fn missing_comma() {
        assert_eq!(
            err(Kind::Trace, quote!(err skip_analysis)),
            ["`err` is a flag and takes no value: write `err` alone"]
        );
        assert_eq!(err(Kind::Trace, quote!(name = "a" err)), ["expected `,`"]);
    }
}

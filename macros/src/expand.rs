//! Code generation.
//!
//! Each entry point parses and validates the attribute and the item in both modes; when the
//! `enable` feature is off (`enabled == false`) a valid item is returned as the very tokens it
//! came in as. Generated code names every path absolutely and binds its locals with
//! `Span::mixed_site()` identifiers, which user code can neither see nor shadow.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, Error, Expr, ExprAsync, FnArg, Ident, LitStr, MacroDelimiter, Meta, MetaList, Pat,
    Result, ReturnType, Type, TypeInfer,
};

use crate::ast::{self, Body, Func, Item};
use crate::attr::{self, Args, Component, Errors, Kind};

/// `#[trace]`: see the crate docs.
pub fn trace(attr: TokenStream, item: TokenStream, enabled: bool) -> TokenStream {
    expand(Kind::Trace, attr, item, enabled)
}

/// `#[entry_span]`: see the crate docs.
pub fn entry_span(attr: TokenStream, item: TokenStream, enabled: bool) -> TokenStream {
    expand(Kind::Entry, attr, item, enabled)
}

/// `#[exit_span]`: see the crate docs.
pub fn exit_span(attr: TokenStream, item: TokenStream, enabled: bool) -> TokenStream {
    expand(Kind::Exit, attr, item, enabled)
}

fn expand(kind: Kind, attr: TokenStream, item: TokenStream, enabled: bool) -> TokenStream {
    match try_expand(kind, attr, item.clone(), enabled) {
        Ok(tokens) => tokens,
        // The item stays as written, so that a misused attribute is one error, not a cascade of
        // errors about a missing fn.
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens
        }
    }
}

fn try_expand(
    kind: Kind,
    attr: TokenStream,
    item: TokenStream,
    enabled: bool,
) -> Result<TokenStream> {
    let mut errors = Errors::default();
    let attr_span = attr.clone().into_iter().next().map(|tt| tt.span());
    let args = errors.push_result(attr::parse(kind, attr));
    let parsed = errors.push_result(syn::parse2::<Item>(item.clone()));
    let Some(parsed) = parsed else {
        return errors.finish(item);
    };
    // The item is checked even when the options are wrong, to report everything at once; it is
    // only rewritten when both are right.
    let out = match (parsed, &args) {
        (Item::Fn(func), _) => {
            check_fn(kind, args.as_ref(), &func, &mut errors);
            match &args {
                Some(args) if enabled => instrument(kind, args, &func),
                _ => item,
            }
        }
        (Item::Impl(mut block), Some(args)) if kind == Kind::Trace => {
            check_block_args(args, attr_span, &mut errors);
            if enabled {
                let type_name = ast::type_name(&block.self_ty);
                name_methods(&type_name, ast::impl_methods(&mut block));
                block.into_token_stream()
            } else {
                item
            }
        }
        (Item::Trait(mut block), Some(args)) if kind == Kind::Trace => {
            check_block_args(args, attr_span, &mut errors);
            if enabled {
                let type_name = block.ident.unraw().to_string();
                name_methods(&type_name, ast::trait_methods(&mut block));
                block.into_token_stream()
            } else {
                item
            }
        }
        (Item::Impl(_) | Item::Trait(_), None) if kind == Kind::Trace => item,
        (Item::Impl(block), _) => {
            errors.push(Error::new_spanned(
                block.impl_token,
                format!(
                    "{kind} goes on a fn; to name the methods of an impl block `Type::method`, \
                     put #[trace] on the block"
                ),
            ));
            item
        }
        (Item::Trait(block), _) => {
            errors.push(Error::new_spanned(
                block.trait_token,
                format!(
                    "{kind} goes on a fn; to name the methods of a trait `Trait::method`, \
                     put #[trace] on the trait"
                ),
            ));
            item
        }
        (Item::NoBody(semi), _) => {
            errors.push(Error::new_spanned(
                semi,
                format!(
                    "{kind} needs a fn with a body: put it on the implementations of this \
                     method, or give the method a default body"
                ),
            ));
            item
        }
        (Item::Other(span, what), _) => {
            let targets = match kind {
                Kind::Trace => "a fn, an impl block or a trait",
                Kind::Entry | Kind::Exit => "a fn",
            };
            errors.push(Error::new(
                span,
                format!("{kind} goes on {targets}, not on {what}"),
            ));
            item
        }
    };
    errors.finish(out)
}

fn check_fn(kind: Kind, args: Option<&Args>, func: &Func, errors: &mut Errors) {
    if let Some(constness) = &func.sig.constness {
        errors.push(Error::new_spanned(
            constness,
            format!(
                "{kind} cannot instrument a `const fn`: a span reads the clock and the current \
                 trace, which const evaluation cannot; remove `const` or the attribute"
            ),
        ));
    }
    if let Some(carrier) = args.and_then(|args| args.carrier.as_ref())
        && !func.has_argument(carrier)
    {
        let names: Vec<String> = func
            .sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Receiver(_) => Some("self".to_owned()),
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(p) => Some(p.ident.to_string()),
                    _ => None,
                },
            })
            .collect();
        let expected = if names.is_empty() {
            format!("`{}` takes no named argument", func.sig.ident)
        } else {
            format!("expected one of: {}", names.join(", "))
        };
        errors.push(Error::new_spanned(
            carrier,
            format!(
                "`carrier = {carrier}` names no argument of `{}`; {expected}",
                func.sig.ident
            ),
        ));
    }
}

fn check_block_args(args: &Args, attr_span: Option<Span>, errors: &mut Errors) {
    if !args.is_empty() {
        errors.push(Error::new(
            attr_span.unwrap_or_else(Span::call_site),
            "#[trace] on an impl block or a trait takes no options: it only names the methods \
             marked #[trace], #[entry_span] or #[exit_span] `Type::method`; put options on \
             the methods",
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// impl blocks

/// Gives each method marked with one of our attributes and no `name` the name `Type::method`,
/// by adding `name = "Type::method"` to its attribute (which expands after this one).
fn name_methods<'a>(
    type_name: &str,
    methods: impl Iterator<Item = (&'a Ident, &'a mut Vec<Attribute>)>,
) {
    for (ident, attrs) in methods {
        for attr in attrs.iter_mut().filter(|attr| is_ours(attr)) {
            let name = LitStr::new(&format!("{type_name}::{}", ident.unraw()), ident.span());
            add_name(attr, &name);
        }
    }
}

/// `#[trace]`, `#[entry_span]`, `#[exit_span]`, alone or as `skytrace::…` (or `skytrace_macros::…`).
fn is_ours(attr: &Attribute) -> bool {
    let segments: Vec<_> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    match segments.as_slice() {
        [name] => is_our_name(name),
        [krate, name] => (krate == "skytrace" || krate == "skytrace_macros") && is_our_name(name),
        _ => false,
    }
}

fn is_our_name(name: &str) -> bool {
    matches!(name, "trace" | "entry_span" | "exit_span")
}

fn add_name(attr: &mut Attribute, name: &LitStr) {
    match &mut attr.meta {
        Meta::Path(path) => {
            attr.meta = Meta::List(MetaList {
                path: path.clone(),
                delimiter: MacroDelimiter::Paren(Default::default()),
                tokens: quote!(name = #name),
            });
        }
        Meta::List(list) => {
            if has_name(&list.tokens) {
                return;
            }
            let ends_with_comma = matches!(
                list.tokens.clone().into_iter().last(),
                Some(TokenTree::Punct(p)) if p.as_char() == ','
            );
            if !list.tokens.is_empty() && !ends_with_comma {
                list.tokens.extend(quote!(,));
            }
            list.tokens.extend(quote!(name = #name));
        }
        // Not our syntax: the attribute reports it when it expands.
        Meta::NameValue(_) => {}
    }
}

/// Whether an option list has a top-level `name = …`.
fn has_name(tokens: &TokenStream) -> bool {
    let mut at_start = true;
    let mut tokens = tokens.clone().into_iter().peekable();
    while let Some(tt) = tokens.next() {
        if at_start
            && let TokenTree::Ident(ident) = &tt
            && ident == "name"
            && matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '=')
        {
            return true;
        }
        at_start = matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',');
    }
    false
}

// ---------------------------------------------------------------------------------------------
// fns

/// Hygienic names of the generated locals.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// A hygienic local placed at `at`: rustc's errors about its value (an error type or a tag that
/// is not `Display`) then point at the user's token instead of the whole attribute.
fn local_at(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

/// The instrumented fn: same attributes, visibility and signature; a new body.
fn instrument(kind: Kind, args: &Args, func: &Func) -> TokenStream {
    let Func {
        attrs,
        inner_attrs,
        vis,
        defaultness,
        sig,
        brace_token,
        stmts: _,
    } = func;
    let body = match func.body() {
        Body::Sync => sync_body(kind, args, func),
        Body::Async => async_fn_body(kind, args, func),
        Body::AsyncTail {
            index,
            async_expr,
            pin_call,
        } => {
            let output = match &sig.output {
                ReturnType::Type(_, ty) => ast::future_output(ty),
                ReturnType::Default => None,
            };
            let new_async = async_block(kind, args, func, async_expr, output);
            let tail = match pin_call {
                Some(call) => {
                    let mut call = call.clone();
                    call.args[0] = Expr::Verbatim(new_async);
                    call.into_token_stream()
                }
                None => new_async,
            };
            let before = &func.stmts[..index];
            quote!(#(#before)* #tail)
        }
        Body::FutureReturning => future_returning_body(kind, args, func),
    };
    let mut tokens = quote!(#(#attrs)* #vis #defaultness #sig);
    brace_token.surround(&mut tokens, |tokens| {
        tokens.extend(quote!(#(#inner_attrs)*));
        tokens.extend(body);
    });
    tokens
}

/// The operation name: `name = "…"`, else the fn's name. The literal gets the macro's span, so
/// that lints on user literals (`{id}` in `"GET:/users/{id}"` looks like a format argument to
/// clippy) do not fire on it.
fn name(args: &Args, func: &Func) -> LitStr {
    let value = match &args.name {
        Some(name) => name.value(),
        None => func.sig.ident.unraw().to_string(),
    };
    LitStr::new(&value, Span::call_site())
}

/// `let __skytrace_span = …;` and the options, set only when the span records.
fn open_span(kind: Kind, args: &Args, func: &Func, sync: bool) -> TokenStream {
    let span = local("__skytrace_span");
    let name = name(args, func);
    // A sync fn's local span never leaves its thread: the lock-free `LocalSpan`, entered at once.
    let local_span = sync && kind == Kind::Trace;
    let ty = if local_span {
        quote!(::skytrace::LocalSpan)
    } else {
        quote!(::skytrace::Span)
    };
    let create = match kind {
        Kind::Trace if local_span => quote!(::skytrace::LocalSpan::enter(#name)),
        Kind::Trace => quote!(::skytrace::Span::local(#name)),
        Kind::Entry => match &args.carrier {
            Some(carrier) => quote_spanned! {carrier.span()=>
                ::skytrace::Span::entry(#name, &#carrier)
            },
            None => quote!(::skytrace::Span::root_entry(#name)),
        },
        Kind::Exit => match (args.peer_literal(), &args.peer) {
            (Some(peer), _) => {
                let peer = LitStr::new(&peer.value(), Span::call_site());
                quote!(::skytrace::Span::exit(#name, #peer))
            }
            (None, Some(peer)) => quote_spanned! {peer.span()=>
                ::skytrace::__private::exit(#name, &(#peer))
            },
            (None, None) => unreachable!("#[exit_span] without `peer` is rejected by attr::parse"),
        },
    };

    let mut bindings = Vec::new();
    let mut record = Vec::new();
    if let Some(layer) = &args.layer {
        record.push(quote_spanned! {layer.span()=>
            #ty::set_layer(&#span, ::skytrace::SpanLayer::#layer);
        });
    }
    if let Some(component) = &args.component {
        let id = match component {
            Component::Id(lit) => lit.to_token_stream(),
            Component::Known(ident) => quote_spanned!(ident.span()=> ::skytrace::component::#ident),
            Component::Path(path) => path.to_token_stream(),
        };
        record.push(quote!(#ty::set_component(&#span, #id);));
    }
    if let Some(skip) = &args.skip_analysis {
        record.push(quote_spanned!(skip.span()=> #ty::set_skip_analysis(&#span);));
    }
    if kind == Kind::Entry {
        match (args.peer_literal(), &args.peer) {
            (Some(peer), _) => record.push(quote!(::skytrace::Span::set_peer(&#span, #peer);)),
            (None, Some(peer)) => {
                let binding = local_at("__skytrace_peer", peer.span());
                bindings.push(quote_spanned! {peer.span()=>
                    let #binding: &dyn ::core::fmt::Display = &(#peer);
                });
                record.push(quote_spanned! {peer.span()=>
                    ::skytrace::Span::set_peer(&#span, ::std::string::ToString::to_string(#binding));
                });
            }
            (None, None) => {}
        }
    }
    for (i, tag) in args.tags.iter().enumerate() {
        let key = LitStr::new(&tag.key, tag.key_span());
        let value = &tag.value;
        if let Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) = value
        {
            let lit = LitStr::new(&lit.value(), Span::call_site());
            record.push(quote!(#ty::add_tag(&#span, #key, #lit);));
            continue;
        }
        let binding = local_at(&format!("__skytrace_tag_{i}"), value.span());
        // Typed `&dyn Display` so that a value that is not `Display` is reported at the value.
        bindings.push(quote_spanned! {value.span()=>
            let #binding: &dyn ::core::fmt::Display = &(#value);
        });
        record.push(quote_spanned! {value.span()=>
            #ty::add_tag(&#span, #key, ::std::string::ToString::to_string(#binding));
        });
    }

    let options = if bindings.is_empty() && record.is_empty() {
        TokenStream::new()
    } else {
        // Tag values are evaluated once, always (so their side effects do not depend on
        // sampling), and only formatted when the span records.
        quote! {
            {
                #(#bindings)*
                if #ty::is_recording(&#span) {
                    #(#record)*
                }
            }
        }
    };
    quote! {
        let #span = #create;
        #options
    }
}

/// Plain fn: the span is current for the call; with `err`, the body runs in a closure so that
/// its `return`s and `?`s yield a value the macro can look at.
fn sync_body(kind: Kind, args: &Args, func: &Func) -> TokenStream {
    let span = local("__skytrace_span");
    let guard = local("__skytrace_guard");
    let open = open_span(kind, args, func, true);
    let block = func.block();
    // A local span is current from the start and ends when dropped at the end of the fn. An
    // entry or exit span is handed to a guard that owns it: current until the guard drops at
    // the end of the fn, then ended (a cheaper handover than `Span::enter`, which must count a
    // reference).
    let enter = match kind {
        Kind::Trace => TokenStream::new(),
        Kind::Entry | Kind::Exit => quote!(let #guard = ::skytrace::Span::entered(#span);),
    };
    match &args.err {
        None => quote! {
            #open
            #enter
            #block
        },
        Some(err) => {
            let ret = local_at("__skytrace_ret", err.span());
            let output = return_type(func);
            let fake = fake_return(output.as_ref(), &func.sig.output);
            let call = call_once(quote!(move || { #fake #block }));
            let record = record_err(err.span(), &ret);
            quote! {
                #open
                #enter
                let #ret = #call;
                #record
                #ret
            }
        }
    }
}

/// `async fn`: the original body, wrapped in an async block, runs inside the span.
fn async_fn_body(kind: Kind, args: &Args, func: &Func) -> TokenStream {
    let span = local("__skytrace_span");
    let open = open_span(kind, args, func, false);
    let output = return_type(func);
    let fake = fake_return(output.as_ref(), &func.sig.output);
    let block = func.block();
    let inner = with_err_check(args, quote!(async move { #fake #block }), quote!(move));
    quote! {
        #open
        ::skytrace::Instrument::in_span(#inner, #span).await
    }
}

/// The tail async block of a fn that returns a future, instrumented inside: the span starts when
/// the future is first polled and covers the async work only.
fn async_block(
    kind: Kind,
    args: &Args,
    func: &Func,
    async_expr: &ExprAsync,
    output: Option<&Type>,
) -> TokenStream {
    let span = local("__skytrace_span");
    let open = open_span(kind, args, func, false);
    let ExprAsync {
        attrs,
        async_token,
        capture,
        block,
    } = async_expr;
    let output = output.map(erase_impl_trait);
    let fake = fake_return(output.as_ref(), &func.sig.output);
    let stmts = &block.stmts;
    let inner = with_err_check(
        args,
        quote!(#async_token #capture { #fake { #(#stmts)* } }),
        capture.to_token_stream(),
    );
    quote! {
        #(#attrs)* #async_token #capture {
            #open
            ::skytrace::Instrument::in_span(#inner, #span).await
        }
    }
}

/// A fn declared `-> impl Future` whose body does not end in an async block: the span starts at
/// the call, is current while the body builds the future, and runs the future.
fn future_returning_body(kind: Kind, args: &Args, func: &Func) -> TokenStream {
    let span = local("__skytrace_span");
    let guard = local("__skytrace_guard");
    let future = local("__skytrace_future");
    let open = open_span(kind, args, func, false);
    let block = func.block();
    let call = call_once(quote!(move || #block));
    let wrapped = with_err_check(args, quote!(#future), quote!(move));
    quote! {
        #open
        let #future = {
            let #guard = ::skytrace::Span::enter(&#span);
            #call
        };
        ::skytrace::Instrument::in_span(#wrapped, #span)
    }
}

/// With `err`: `async move { let ret = FUTURE.await; <record Err>; ret }`; without, `FUTURE`.
/// The error is recorded on the current span, which `in_span` has entered around the poll.
fn with_err_check(args: &Args, future: TokenStream, capture: TokenStream) -> TokenStream {
    let Some(err) = &args.err else {
        return future;
    };
    let ret = local_at("__skytrace_ret", err.span());
    let record = record_err(err.span(), &ret);
    quote! {
        async #capture {
            let #ret = #future.await;
            #record
            #ret
        }
    }
}

/// `err`'s check of the fn's value `ret`, placed at `err` with the hygiene of `ret` itself: one
/// span for the whole argument, so that the error of a fn that returns no `Result` points at
/// `err`.
fn record_err(err: Span, ret: &Ident) -> TokenStream {
    let at = Span::mixed_site().located_at(err);
    quote_spanned! {at=>
        ::skytrace::__private::record_err(&#ret);
    }
}

/// Calls `closure` through an `FnOnce` bound, so that a body returning a reborrow of a captured
/// `&mut` compiles (an immediately called closure would be inferred `FnMut` and refuse it).
fn call_once(closure: TokenStream) -> TokenStream {
    let f = local("__skytrace_call_once");
    let ty_f = local("F");
    let ty_r = local("R");
    let arg = local("f");
    quote! {
        {
            #[inline(always)]
            fn #f<#ty_f: ::core::ops::FnOnce() -> #ty_r, #ty_r>(#arg: #ty_f) -> #ty_r {
                #arg()
            }
            #f(#closure)
        }
    }
}

/// The declared return type with `impl Trait` replaced by `_`, for a `let` type.
fn return_type(func: &Func) -> Option<Type> {
    match &func.sig.output {
        ReturnType::Type(_, ty) => Some(erase_impl_trait(ty)),
        ReturnType::Default => None,
    }
}

/// A statement that never runs but makes the enclosing closure or async block return `ty`, so
/// that `?` and `return` in the body infer as they did in the fn (async-trait does the same).
fn fake_return(ty: Option<&Type>, output: &ReturnType) -> TokenStream {
    let Some(ty) = ty else {
        return TokenStream::new();
    };
    if matches!(ty, Type::Never(_)) {
        return TokenStream::new();
    }
    let ret = local("__skytrace_fake");
    quote_spanned! {output.span()=>
        if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#ty> {
            #[allow(unreachable_code)]
            return #ret;
        }
    }
}

fn erase_impl_trait(ty: &Type) -> Type {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                *ty = Type::Infer(TypeInfer {
                    underscore_token: syn::Token![_](impl_trait.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty
}

#[cfg(test)]
mod tests;

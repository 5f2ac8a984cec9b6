use super::*;
use quote::quote;

/// Every form the issue lists, with and without options.
fn forms() -> Vec<TokenStream> {
    vec![
        quote!(
            fn free(a: u32) -> u32 {
                a + 1
            }
        ),
        quote!(
            #[must_use]
            /// Docs.
            #[cfg(not(any()))]
            pub(crate) fn with_attrs<'a, T: Clone>(x: &'a T) -> T
            where
                T: Send,
            {
                #![allow(unused)]
                x.clone()
            }
        ),
        quote!(
            fn method(&self) {}
        ),
        quote!(
            fn by_value(mut self, x: u8) -> Self {
                self
            }
        ),
        quote!(
            fn boxed(self: Box<Self>) {}
        ),
        quote!(
            fn pinned(self: Pin<&mut Self>) {}
        ),
        quote!(
            async fn fetch(&self, url: &str) -> Result<String, Error> {
                let page = get(url).await?;
                Ok(page)
            }
        ),
        quote!(
            fn returns_future(&self) -> impl Future<Output = u8> + '_ {
                async move { 1 }
            }
        ),
        quote!(
            fn returns_other_future(&self) -> impl Future<Output = u8> + Send {
                ready(1)
            }
        ),
        quote!(
            fn async_trait<'life0, 'async_trait>(
                &'life0 self,
            ) -> ::core::pin::Pin<
                Box<dyn ::core::future::Future<Output = u8> + ::core::marker::Send + 'async_trait>,
            >
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    let __self = self;
                    let __ret: u8 = { 1 };
                    __ret
                })
            }
        ),
        quote!(
            unsafe fn raw(p: *const u8) -> u8 {
                unsafe { *p }
            }
        ),
        quote!(
            default fn specialized(&self) {}
        ),
        quote!(
            extern "C" fn callback(x: i32) -> i32 {
                x
            }
        ),
    ]
}

/// The disabled expansion is the input, token for token.
#[test]
fn disabled_is_identity() {
    let attrs = [
        quote!(),
        quote!(
            name = "x",
            tags(a.b = 1, "c" = self.d),
            err,
            layer = Http,
            component = HTTP
        ),
        quote!(skip_analysis, component = 11000),
    ];
    for item in forms() {
        for attr in &attrs {
            let out = trace(attr.clone(), item.clone(), false);
            assert_same_tokens(&out, &item);
        }
    }
    let headers = quote!(
        async fn handler(headers: HeaderMap, id: u64) -> String {
            id.to_string()
        }
    );
    let out = entry_span(
        quote!(carrier = headers, peer = "x"),
        headers.clone(),
        false,
    );
    assert_same_tokens(&out, &headers);
    let out = exit_span(quote!(peer = self.addr), headers.clone(), false);
    assert_same_tokens(&out, &headers);
    let block = quote!(
        impl<T> Foo<T> {
            #[trace]
            fn a(&self) {}
        }
    );
    assert_same_tokens(&trace(quote!(), block.clone(), false), &block);
}

/// Same tokens, same order, same spans' text: compares the flattened token trees.
fn assert_same_tokens(a: &TokenStream, b: &TokenStream) {
    fn flatten(tokens: &TokenStream, out: &mut Vec<String>) {
        for tt in tokens.clone() {
            match tt {
                TokenTree::Group(g) => {
                    out.push(format!("{:?}(", g.delimiter()));
                    flatten(&g.stream(), out);
                    out.push(")".into());
                }
                other => out.push(other.to_string()),
            }
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    flatten(a, &mut x);
    flatten(b, &mut y);
    assert_eq!(x, y);
}

/// Misuse is an error in both modes, and the item is still emitted after it.
#[test]
fn disabled_still_checks() {
    let item = quote!(
        fn f() {}
    );
    for enabled in [false, true] {
        let out = trace(quote!(nme = "x"), item.clone(), enabled).to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("unknown option `nme`"), "{out}");
        assert!(out.ends_with(&item.to_string()), "{out}");
    }
}

/// Every enabled expansion is a valid item.
#[test]
fn enabled_expansions_parse() {
    let attrs = [
        quote!(),
        quote!(
            name = "x",
            tags(a.b = 1, "c" = "lit"),
            err,
            layer = Http,
            component = HTTP
        ),
        quote!(skip_analysis, component = 11000),
    ];
    for item in forms() {
        for attr in &attrs {
            let out = trace(attr.clone(), item.clone(), true);
            assert!(!out.to_string().contains("compile_error"), "{out}");
            if let Err(e) = syn::parse2::<syn::ImplItemFn>(out.clone()) {
                panic!("{e}: {out}");
            }
        }
    }
}

/// The tokens as text, ignoring spans (mixed-site and call-site idents print alike), the
/// spacing of punctuation (`>>` and `> >`) and trailing commas (which rustfmt adds to the
/// expected code).
fn expand_str(tokens: TokenStream) -> String {
    let mut out = Vec::new();
    flatten_loose(&tokens, &mut out);
    out.join(" ")
}

fn flatten_loose(tokens: &TokenStream, out: &mut Vec<String>) {
    for tt in tokens.clone() {
        match tt {
            TokenTree::Group(g) => {
                out.push(format!("{:?}(", g.delimiter()));
                flatten_loose(&g.stream(), out);
                if out.last().is_some_and(|t| t == ",") {
                    out.pop();
                }
                out.push(")".into());
            }
            TokenTree::Punct(p) => out.push(p.as_char().to_string()),
            other => out.push(other.to_string()),
        }
    }
}

#[test]
fn sync_expansion() {
    let out = trace(
        quote!(tags(user.id = id, kind = "vip")),
        quote!(
            fn load(id: u64) -> Option<String> {
                None
            }
        ),
        true,
    );
    let expected = quote!(
        fn load(id: u64) -> Option<String> {
            let __skytrace_span = ::skytrace::LocalSpan::enter("load");
            {
                let __skytrace_tag_0: &dyn ::core::fmt::Display = &(id);
                if ::skytrace::LocalSpan::is_recording(&__skytrace_span) {
                    ::skytrace::LocalSpan::add_tag(
                        &__skytrace_span,
                        "user.id",
                        ::std::string::ToString::to_string(__skytrace_tag_0),
                    );
                    ::skytrace::LocalSpan::add_tag(&__skytrace_span, "kind", "vip");
                }
            }
            { None }
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));
}

#[test]
fn sync_err_expansion() {
    let out = trace(
        quote!(err),
        quote!(
            fn get(&mut self) -> Result<&mut u8, Error> {
                Ok(self.x.first_mut().ok_or(Error)?)
            }
        ),
        true,
    );
    let expected = quote!(
        fn get(&mut self) -> Result<&mut u8, Error> {
            let __skytrace_span = ::skytrace::LocalSpan::enter("get");
            let __skytrace_ret = {
                #[inline(always)]
                fn __skytrace_call_once<F: ::core::ops::FnOnce() -> R, R>(f: F) -> R {
                    f()
                }
                __skytrace_call_once(move || {
                    if let ::core::option::Option::Some(__skytrace_fake) =
                        ::core::option::Option::None::<Result<&mut u8, Error>>
                    {
                        #[allow(unreachable_code)]
                        return __skytrace_fake;
                    }
                    { Ok(self.x.first_mut().ok_or(Error)?) }
                })
            };
            ::skytrace::__private::record_err(&__skytrace_ret);
            __skytrace_ret
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));
}

#[test]
fn async_expansion() {
    let out = trace(
        quote!(err, layer = Database, component = 5, skip_analysis),
        quote!(
            async fn query(&self, sql: &str) -> Result<impl Display, Error> {
                self.db.run(sql).await
            }
        ),
        true,
    );
    let expected = quote!(
        async fn query(&self, sql: &str) -> Result<impl Display, Error> {
            let __skytrace_span = ::skytrace::Span::local("query");
            {
                if ::skytrace::Span::is_recording(&__skytrace_span) {
                    ::skytrace::Span::set_layer(&__skytrace_span, ::skytrace::SpanLayer::Database);
                    ::skytrace::Span::set_component(&__skytrace_span, 5);
                    ::skytrace::Span::set_skip_analysis(&__skytrace_span);
                }
            }
            ::skytrace::Instrument::in_span(
                async move {
                    let __skytrace_ret = async move {
                        if let ::core::option::Option::Some(__skytrace_fake) =
                            ::core::option::Option::None::<Result<_, Error>>
                        {
                            #[allow(unreachable_code)]
                            return __skytrace_fake;
                        }
                        { self.db.run(sql).await }
                    }
                    .await;
                    ::skytrace::__private::record_err(&__skytrace_ret);
                    __skytrace_ret
                },
                __skytrace_span,
            )
            .await
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));
}

#[test]
fn async_trait_is_instrumented_inside() {
    let out = trace(
        quote!(),
        quote!(
            fn get<'a>(&'a self) -> Pin<Box<dyn Future<Output = u8> + Send + 'a>> {
                let x = 1;
                Box::pin(async move { x })
            }
        ),
        true,
    );
    let expected = quote!(
        fn get<'a>(&'a self) -> Pin<Box<dyn Future<Output = u8> + Send + 'a>> {
            let x = 1;
            Box::pin(async move {
                let __skytrace_span = ::skytrace::Span::local("get");
                ::skytrace::Instrument::in_span(
                    async move {
                        if let ::core::option::Option::Some(__skytrace_fake) =
                            ::core::option::Option::None::<u8>
                        {
                            #[allow(unreachable_code)]
                            return __skytrace_fake;
                        }
                        { x }
                    },
                    __skytrace_span,
                )
                .await
            })
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));
}

#[test]
#[rustfmt::skip] // keeps the braces of the closure
fn future_returning_is_wrapped() {
    let out = trace(
        quote!(),
        quote!(
            fn call(&self) -> impl Future<Output = u8> {
                self.inner.call()
            }
        ),
        true,
    );
    let expected = quote!(
        fn call(&self) -> impl Future<Output = u8> {
            let __skytrace_span = ::skytrace::Span::local("call");
            let __skytrace_future = {
                let __skytrace_guard = ::skytrace::Span::enter(&__skytrace_span);
                {
                    #[inline(always)]
                    fn __skytrace_call_once<F: ::core::ops::FnOnce() -> R, R>(f: F) -> R {
                        f()
                    }
                    __skytrace_call_once(move || { self.inner.call() })
                }
            };
            ::skytrace::Instrument::in_span(__skytrace_future, __skytrace_span)
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));
}

#[test]
fn entry_expansion() {
    let out = entry_span(
        quote!(carrier = headers, name = "GET:/users", peer = remote),
        quote!(
            fn handle(headers: &HeaderMap, remote: SocketAddr) {}
        ),
        true,
    );
    let expected = quote!(
        fn handle(headers: &HeaderMap, remote: SocketAddr) {
            let __skytrace_span = ::skytrace::Span::entry("GET:/users", &headers);
            {
                let __skytrace_peer: &dyn ::core::fmt::Display = &(remote);
                if ::skytrace::Span::is_recording(&__skytrace_span) {
                    ::skytrace::Span::set_peer(
                        &__skytrace_span,
                        ::std::string::ToString::to_string(__skytrace_peer),
                    );
                }
            }
            let __skytrace_guard = ::skytrace::Span::entered(__skytrace_span);
            {}
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));

    let out = entry_span(
        quote!(),
        quote!(
            fn job() {}
        ),
        true,
    )
    .to_string();
    assert!(
        out.contains(&quote!(::skytrace::Span::root_entry("job")).to_string()),
        "{out}"
    );
}

#[test]
fn exit_expansion() {
    let out = exit_span(
        quote!(peer = "db:5432"),
        quote!(
            fn q() {}
        ),
        true,
    )
    .to_string();
    assert!(
        out.contains(&quote!(::skytrace::Span::exit("q", "db:5432")).to_string()),
        "{out}"
    );
    let out = exit_span(
        quote!(peer = self.addr),
        quote!(
            fn q(&self) {}
        ),
        true,
    )
    .to_string();
    assert!(
        out.contains(&quote!(::skytrace::__private::exit("q", &(self.addr))).to_string()),
        "{out}"
    );
}

#[test]
fn impl_block_names_methods() {
    let out = trace(
        quote!(),
        quote!(
            impl<T> Repo<T> {
                #[trace]
                fn get(&self) {}
                #[skytrace::trace(err)]
                fn put(&self) {}
                #[skytrace::exit_span(peer = "x")]
                fn call(&self) {}
                #[trace(name = "custom", err)]
                fn named(&self) {}
                #[inline]
                fn untouched(&self) {}
            }
        ),
        true,
    );
    let expected = quote!(
        impl<T> Repo<T> {
            #[trace(name = "Repo::get")]
            fn get(&self) {}
            #[skytrace::trace(err, name = "Repo::put")]
            fn put(&self) {}
            #[skytrace::exit_span(peer = "x", name = "Repo::call")]
            fn call(&self) {}
            #[trace(name = "custom", err)]
            fn named(&self) {}
            #[inline]
            fn untouched(&self) {}
        }
    );
    assert_eq!(expand_str(out), expand_str(expected));

    let out = trace(
        quote!(),
        quote!(
            trait Store {
                #[trace]
                fn get(&self) {}
                fn put(&self);
            }
        ),
        true,
    );
    assert!(out.to_string().contains("\"Store::get\""), "{out}");
}

fn errors_of(out: TokenStream) -> Vec<String> {
    // compile_error! { "message" } — collect the messages.
    let mut messages = Vec::new();
    let mut tokens = out.into_iter().peekable();
    while let Some(tt) = tokens.next() {
        if let TokenTree::Ident(ident) = &tt
            && ident == "compile_error"
        {
            tokens.next(); // !
            if let Some(TokenTree::Group(group)) = tokens.next() {
                let lit: LitStr = syn::parse2(group.stream()).unwrap();
                messages.push(lit.value());
            }
        }
    }
    messages
}

#[test]
fn item_errors() {
    let e = errors_of(trace(
        quote!(),
        quote!(
            const fn f() {}
        ),
        true,
    ));
    assert_eq!(
        e,
        [
            "#[trace] cannot instrument a `const fn`: a span reads the clock and the current trace, \
          which const evaluation cannot; remove `const` or the attribute"
        ]
    );
    let e = errors_of(trace(
        quote!(),
        quote!(
            struct S;
        ),
        false,
    ));
    assert_eq!(
        e,
        ["#[trace] goes on a fn, an impl block or a trait, not on a struct"]
    );
    let e = errors_of(entry_span(quote!(), quote!(impl S {}), true));
    assert_eq!(
        e,
        [
            "#[entry_span] goes on a fn; to name the methods of an impl block `Type::method`, put \
          #[trace] on the block"
        ]
    );
    let e = errors_of(trace(
        quote!(),
        quote!(
            fn f(&self);
        ),
        true,
    ));
    assert_eq!(
        e,
        [
            "#[trace] needs a fn with a body: put it on the implementations of this method, or give \
          the method a default body"
        ]
    );
    let e = errors_of(entry_span(
        quote!(carrier = hdrs),
        quote!(
            fn f(&self, headers: &HeaderMap, (a, b): (u8, u8)) {}
        ),
        false,
    ));
    assert_eq!(
        e,
        ["`carrier = hdrs` names no argument of `f`; expected one of: self, headers"]
    );
    let e = errors_of(trace(quote!(err), quote!(impl S {}), true));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("#[trace] on an impl block or a trait takes no options"));
    // Both the options and the item are checked in one go.
    let e = errors_of(trace(
        quote!(bogus),
        quote!(
            const fn f() {}
        ),
        true,
    ));
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn raw_identifiers_and_carrier_self() {
    let out = trace(
        quote!(),
        quote!(
            fn r#type() {}
        ),
        true,
    )
    .to_string();
    assert!(out.contains("\"type\""), "{out}");
    let out = entry_span(
        quote!(carrier = self),
        quote!(
            fn f(&self) {}
        ),
        true,
    )
    .to_string();
    assert!(
        out.contains(&quote!(::skytrace::Span::entry("f", &self)).to_string()),
        "{out}"
    );
}

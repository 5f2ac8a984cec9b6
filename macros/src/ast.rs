//! The annotated item: a fn (free, method, trait default method, `async`, returning a future, or
//! an async-trait-style fn whose body is `Box::pin(async move { … })`), or an `impl`/`trait`
//! block whose traced methods get `Type::method` names.

use proc_macro2::{Span, TokenStream};
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    AttrStyle, Attribute, Expr, ExprAsync, ExprCall, FnArg, GenericArgument, Ident, ImplItem,
    Item as SynItem, ItemImpl, ItemTrait, Pat, PathArguments, Receiver, ReturnType, Signature,
    Stmt, Token, TraitItem, Type, TypeParamBound, Visibility, token,
};

/// What an attribute was put on.
pub enum Item {
    /// A fn with a body.
    Fn(Box<Func>),
    /// An `impl` block.
    Impl(Box<ItemImpl>),
    /// A `trait` definition.
    Trait(Box<ItemTrait>),
    /// A fn declared without a body (`fn f(&self);`): the `;`.
    NoBody(Token![;]),
    /// Anything else: where to point and what it is (`a struct`).
    Other(Span, &'static str),
}

/// A fn with a body, whatever its place (free, impl, trait default).
pub struct Func {
    /// Outer attributes, kept in order.
    pub attrs: Vec<Attribute>,
    /// Inner attributes (`#![…]` at the top of the body).
    pub inner_attrs: Vec<Attribute>,
    pub vis: Visibility,
    /// `default` of an impl item under specialization.
    pub defaultness: Option<Token![default]>,
    pub sig: Signature,
    pub brace_token: token::Brace,
    pub stmts: Vec<Stmt>,
}

/// How the body of a fn runs, which decides where the span goes.
pub enum Body<'a> {
    /// A plain fn: the span is entered for the call.
    Sync,
    /// `async fn`: the body is wrapped in an async block run inside the span.
    Async,
    /// A fn whose last expression is an `async` block, maybe in `Box::pin(…)` (what async-trait
    /// generates): the span goes inside that block, so it covers the async work.
    AsyncTail {
        /// Index of the tail statement in `Func::stmts`.
        index: usize,
        async_expr: &'a ExprAsync,
        /// `Some` when the block is the argument of a `Box::pin(…)` call.
        pin_call: Option<&'a ExprCall>,
    },
    /// A fn declared `-> impl Future<…>` whose body builds the future some other way: the
    /// future it returns is wrapped.
    FutureReturning,
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let fork = input.fork();
        match fork.parse::<SynItem>() {
            // syn keeps what is not an item (`default fn`, `fn f();`) verbatim.
            Ok(SynItem::Verbatim(_)) => {}
            Ok(item) if fork.is_empty() => {
                input.advance_to(&fork);
                return Ok(Item::from_syn(item));
            }
            _ => {}
        }
        // `default fn` and body-less fns are not items, but impl/trait items.
        let fork = input.fork();
        if let Ok(item) = fork.parse::<syn::ImplItemFn>()
            && fork.is_empty()
        {
            input.advance_to(&fork);
            let (attrs, inner_attrs) = split_attrs(item.attrs);
            return Ok(Item::Fn(Box::new(Func {
                attrs,
                inner_attrs,
                vis: item.vis,
                defaultness: item.defaultness,
                sig: item.sig,
                brace_token: item.block.brace_token,
                stmts: item.block.stmts,
            })));
        }
        let fork = input.fork();
        if let Ok(item) = fork.parse::<syn::TraitItemFn>()
            && fork.is_empty()
            && let Some(semi) = item.semi_token
        {
            input.advance_to(&fork);
            return Ok(Item::NoBody(semi));
        }
        // Report syn's own error on the item.
        input.parse::<SynItem>().map(Item::from_syn)
    }
}

impl Item {
    fn from_syn(item: SynItem) -> Item {
        let other = |span: Span, what| Item::Other(span, what);
        match item {
            SynItem::Fn(f) => {
                let (attrs, inner_attrs) = split_attrs(f.attrs);
                Item::Fn(Box::new(Func {
                    attrs,
                    inner_attrs,
                    vis: f.vis,
                    defaultness: None,
                    sig: f.sig,
                    brace_token: f.block.brace_token,
                    stmts: f.block.stmts,
                }))
            }
            SynItem::Impl(i) => Item::Impl(Box::new(i)),
            SynItem::Trait(t) => Item::Trait(Box::new(t)),
            SynItem::Struct(s) => other(s.struct_token.span, "a struct"),
            SynItem::Enum(e) => other(e.enum_token.span, "an enum"),
            SynItem::Union(u) => other(u.union_token.span, "a union"),
            SynItem::Mod(m) => other(m.mod_token.span, "a module"),
            SynItem::Const(c) => other(c.const_token.span, "a const"),
            SynItem::Static(s) => other(s.static_token.span, "a static"),
            SynItem::Type(t) => other(t.type_token.span, "a type alias"),
            SynItem::Use(u) => other(u.use_token.span, "a use declaration"),
            SynItem::ForeignMod(f) => other(f.abi.extern_token.span, "an extern block"),
            SynItem::ExternCrate(e) => other(e.extern_token.span, "an extern crate"),
            SynItem::Macro(m) => other(m.mac.path.span(), "a macro invocation"),
            SynItem::TraitAlias(t) => other(t.trait_token.span, "a trait alias"),
            other_item => other(other_item.span(), "this item"),
        }
    }
}

/// Splits outer attributes from the inner ones syn folds into the same list.
fn split_attrs(attrs: Vec<Attribute>) -> (Vec<Attribute>, Vec<Attribute>) {
    attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer))
}

impl Func {
    /// The receiver, if this is a method (`self`, `&self`, `&mut self`, `self: Box<Self>`, …).
    pub fn receiver(&self) -> Option<&Receiver> {
        self.sig.receiver()
    }

    /// Whether `ident` names an argument: a plain identifier pattern, or `self`.
    pub fn has_argument(&self, ident: &Ident) -> bool {
        if ident == "self" {
            return self.receiver().is_some();
        }
        self.sig.inputs.iter().any(|arg| match arg {
            FnArg::Typed(typed) => matches!(&*typed.pat, Pat::Ident(p) if p.ident == *ident),
            FnArg::Receiver(_) => false,
        })
    }

    /// How the body runs.
    pub fn body(&self) -> Body<'_> {
        if self.sig.asyncness.is_some() {
            return Body::Async;
        }
        if let Some((index, Stmt::Expr(tail, None))) = self.stmts.iter().enumerate().next_back() {
            match tail {
                Expr::Async(async_expr) => {
                    return Body::AsyncTail {
                        index,
                        async_expr,
                        pin_call: None,
                    };
                }
                Expr::Call(call) if is_box_pin(&call.func) && call.args.len() == 1 => {
                    if let Some(Expr::Async(async_expr)) = call.args.first() {
                        return Body::AsyncTail {
                            index,
                            async_expr,
                            pin_call: Some(call),
                        };
                    }
                }
                _ => {}
            }
        }
        if let ReturnType::Type(_, ty) = &self.sig.output
            && is_impl_future(ty)
        {
            return Body::FutureReturning;
        }
        Body::Sync
    }

    /// The body's statements in a block of the macro's own braces (not the fn's: braces
    /// with the user's span around a block tail would trip `unused_braces`).
    pub fn block(&self) -> TokenStream {
        let stmts = &self.stmts;
        quote::quote!({ #(#stmts)* })
    }
}

/// `Box::pin`, `std::boxed::Box::pin`, `::alloc::boxed::Box::pin`, …
fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else {
        return false;
    };
    if path.qself.is_some() {
        return false;
    }
    let segments: Vec<_> = path.path.segments.iter().collect();
    matches!(segments.as_slice(), [.., boxed, pin] if boxed.ident == "Box" && pin.ident == "pin")
}

/// `impl Future<…> + …` (the `Future` bound named by any path ending in `Future`).
fn is_impl_future(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(impl_trait) => impl_trait.bounds.iter().any(|bound| {
            matches!(bound, TypeParamBound::Trait(t)
                if t.path.segments.last().is_some_and(|s| s.ident == "Future"))
        }),
        Type::Paren(paren) => is_impl_future(&paren.elem),
        Type::Group(group) => is_impl_future(&group.elem),
        _ => false,
    }
}

/// The `Output` of a future return type: `impl Future<Output = T>`,
/// `Pin<Box<dyn Future<Output = T> + Send + 'a>>`, … Used to give the async block that wraps
/// the body its type, so that `?` and `return` infer as they did before.
pub fn future_output(ty: &Type) -> Option<&Type> {
    match ty {
        Type::ImplTrait(t) => bounds_output(t.bounds.iter()),
        Type::TraitObject(t) => bounds_output(t.bounds.iter()),
        Type::Paren(p) => future_output(&p.elem),
        Type::Group(g) => future_output(&g.elem),
        Type::Path(p) if p.qself.is_none() => {
            // Pin<Box<dyn Future<…>>>: look through the generic arguments.
            let last = p.path.segments.last()?;
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            if last.ident != "Pin" && last.ident != "Box" {
                return None;
            }
            args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(ty) => future_output(ty),
                _ => None,
            })
        }
        _ => None,
    }
}

fn bounds_output<'a>(mut bounds: impl Iterator<Item = &'a TypeParamBound>) -> Option<&'a Type> {
    bounds.find_map(|bound| {
        let TypeParamBound::Trait(t) = bound else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// The name traced methods of an `impl` block get before `::method`: the self type's last path
/// segment without generics (`impl<T> Repo<T>` → `Repo`, `impl Display for &Foo` → `Foo`).
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(segment) => segment.ident.to_string(),
            None => compact(ty),
        },
        Type::Reference(r) => type_name(&r.elem),
        Type::Paren(p) => type_name(&p.elem),
        Type::Group(g) => type_name(&g.elem),
        _ => compact(ty),
    }
}

fn compact(ty: &Type) -> String {
    quote::ToTokens::to_token_stream(ty)
        .to_string()
        .replace(' ', "")
}

/// The methods of an impl block or trait, for the impl-level `#[trace]`.
pub fn impl_methods(item: &mut ItemImpl) -> impl Iterator<Item = (&Ident, &mut Vec<Attribute>)> {
    item.items.iter_mut().filter_map(|item| match item {
        ImplItem::Fn(f) => Some((&f.sig.ident, &mut f.attrs)),
        _ => None,
    })
}

/// See [`impl_methods`].
pub fn trait_methods(item: &mut ItemTrait) -> impl Iterator<Item = (&Ident, &mut Vec<Attribute>)> {
    item.items.iter_mut().filter_map(|item| match item {
        TraitItem::Fn(f) => Some((&f.sig.ident, &mut f.attrs)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn func(tokens: proc_macro2::TokenStream) -> Func {
        match syn::parse2::<Item>(tokens).unwrap() {
            Item::Fn(f) => *f,
            _ => panic!("not a fn"),
        }
    }

    #[test]
    fn kinds() {
        assert!(matches!(
            func(quote!(
                fn f() {}
            ))
            .body(),
            Body::Sync
        ));
        assert!(matches!(
            func(quote!(
                async fn f() {}
            ))
            .body(),
            Body::Async
        ));
        assert!(matches!(
            func(quote!(
                fn f() -> impl Future<Output = ()> {
                    async move {}
                }
            ))
            .body(),
            Body::AsyncTail { pin_call: None, .. }
        ));
        assert!(matches!(
            func(quote!(
                fn f(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                    Box::pin(async move {})
                }
            ))
            .body(),
            Body::AsyncTail {
                pin_call: Some(_),
                ..
            }
        ));
        assert!(matches!(
            func(quote!(
                fn f() -> impl core::future::Future<Output = u8> + Send {
                    ready(1)
                }
            ))
            .body(),
            Body::FutureReturning
        ));
        // A `Box::pin` of something that is not an async block is a plain fn.
        assert!(matches!(
            func(quote!(
                fn f() -> Pin<Box<dyn Future<Output = ()>>> {
                    Box::pin(g())
                }
            ))
            .body(),
            Body::Sync
        ));
    }

    #[test]
    fn items() {
        assert!(matches!(
            syn::parse2::<Item>(quote!(impl Foo { fn a(&self) {} })).unwrap(),
            Item::Impl(_)
        ));
        assert!(matches!(
            syn::parse2::<Item>(quote!(
                trait Foo {
                    fn a(&self) {}
                }
            ))
            .unwrap(),
            Item::Trait(_)
        ));
        assert!(matches!(
            syn::parse2::<Item>(quote!(
                fn a(&self);
            ))
            .unwrap(),
            Item::NoBody(_)
        ));
        assert!(matches!(
            syn::parse2::<Item>(quote!(
                struct S;
            ))
            .unwrap(),
            Item::Other(_, "a struct")
        ));
        let f = func(quote!(#[inline] default fn a(&self) { #![allow(unused)] }));
        assert!(f.defaultness.is_some());
        assert_eq!(f.attrs.len(), 1);
        assert_eq!(f.inner_attrs.len(), 1);
    }

    #[test]
    fn arguments() {
        let f = func(quote!(
            fn f(&self, headers: &HeaderMap, (a, b): (u8, u8)) {}
        ));
        assert!(f.receiver().is_some());
        assert!(f.has_argument(&Ident::new("headers", Span::call_site())));
        assert!(f.has_argument(&Ident::new("self", Span::call_site())));
        assert!(!f.has_argument(&Ident::new("a", Span::call_site())));
    }

    #[test]
    fn outputs() {
        let ty: Type = syn::parse_quote!(Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'a>>);
        let out = future_output(&ty).unwrap();
        assert_eq!(quote!(#out).to_string(), quote!(Result<u8, E>).to_string());
        let ty: Type = syn::parse_quote!(impl Future<Output = u8> + Send);
        assert!(future_output(&ty).is_some());
        let ty: Type = syn::parse_quote!(u8);
        assert!(future_output(&ty).is_none());
    }

    #[test]
    fn type_names() {
        let ty: Type = syn::parse_quote!(crate::repo::Repo<T>);
        assert_eq!(type_name(&ty), "Repo");
        let ty: Type = syn::parse_quote!(&'a mut Foo);
        assert_eq!(type_name(&ty), "Foo");
        let ty: Type = syn::parse_quote!([u8]);
        assert_eq!(type_name(&ty), "[u8]");
    }
}

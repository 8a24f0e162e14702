//! `#[processor]`: turns one function into a weir processor component.
//!
//! - `#[processor]` on `fn(&Record) -> R` calls it once per record.
//! - `#[processor(batch)]` on `fn(&Batch) -> R` calls it once per batch.
//! - `config = ["key", ...]` lists the configuration keys the processor accepts; any other key
//!   is refused at start with its name.
//! - `on_timer = function` names the function weir calls with each timer the processor set that
//!   fires: `fn(&weir_sdk::timers::Timer) -> R`.
//!
//! `R` is anything implementing `weir_sdk::IntoOutputs`. The function itself is left as written,
//! so it can be called from native unit tests; the component glue exists only on wasm.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprArray, ExprLit, ItemFn, Lit, Meta, Token};

#[proc_macro_attribute]
pub fn processor(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let function: ItemFn = syn::parse2(item)?;
    let mut batch = false;
    let mut keys: Vec<String> = Vec::new();
    let mut on_timer: Option<syn::Path> = None;
    for meta in Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)? {
        match &meta {
            Meta::Path(p) if p.is_ident("batch") => batch = true,
            Meta::NameValue(nv) if nv.path.is_ident("config") => keys = config_keys(&nv.value)?,
            Meta::NameValue(nv) if nv.path.is_ident("on_timer") => match &nv.value {
                Expr::Path(p) => on_timer = Some(p.path.clone()),
                other => return Err(syn::Error::new_spanned(other, "expected a function: on_timer = my_function")),
            },
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "expected `batch`, `config = [\"key\", ...]` or `on_timer = function`",
                ))
            }
        }
    }
    let name = &function.sig.ident;
    let driver = if batch { quote!(process_batch) } else { quote!(process_each) };
    let timer_handler = match &on_timer {
        Some(handler) => quote!(::weir_sdk::__private::on_timer_each(timers, #handler)),
        None => quote!(::weir_sdk::__private::no_timer_handler(timers)),
    };
    // Off wasm the glue is absent; naming the handler keeps it from looking unused.
    let native_use = on_timer.as_ref().map(|handler| {
        quote! {
            #[cfg(not(target_arch = "wasm32"))]
            const _: () = { let _ = #handler; };
        }
    });
    Ok(quote! {
        #function
        #native_use

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct WeirProcessor;

            impl ::weir_sdk::bindings::exports::weir::processor::processor::Guest for WeirProcessor {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    ::weir_sdk::__private::init(config, &[#(#keys),*])
                }

                fn process(
                    batch: ::weir_sdk::bindings::weir::processor::types::Batch,
                ) -> ::core::result::Result<
                    ::weir_sdk::bindings::weir::processor::types::Outputs,
                    ::weir_sdk::bindings::weir::processor::types::ProcessingError,
                > {
                    ::weir_sdk::__private::#driver(&batch, #name)
                }
            }

            impl ::weir_sdk::bindings::exports::weir::processor::timer_handler::Guest for WeirProcessor {
                fn on_timer(
                    timers: ::std::vec::Vec<::weir_sdk::bindings::weir::processor::types::Timer>,
                ) -> ::core::result::Result<
                    ::weir_sdk::bindings::weir::processor::types::Outputs,
                    ::weir_sdk::bindings::weir::processor::types::ProcessingError,
                > {
                    #timer_handler
                }
            }

            ::weir_sdk::bindings::export!(WeirProcessor with_types_in ::weir_sdk::bindings);
        };
    })
}

fn config_keys(value: &Expr) -> syn::Result<Vec<String>> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        return Err(syn::Error::new_spanned(value, "expected a list of strings: config = [\"key\", ...]"));
    };
    elems
        .iter()
        .map(|e| match e {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Ok(s.value()),
            other => Err(syn::Error::new_spanned(other, "config keys are string literals")),
        })
        .collect()
}

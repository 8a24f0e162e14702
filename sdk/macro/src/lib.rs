//! `#[processor]`: turns one function into a weir processor component.
//!
//! - `#[processor]` on `fn(&Record) -> R` calls it once per record.
//! - `#[processor(batch)]` on `fn(&Batch) -> R` calls it once per batch.
//! - `config = ["key", ...]` lists the configuration keys the processor accepts; any other key
//!   is refused at start with its name.
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
    for meta in Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)? {
        match &meta {
            Meta::Path(p) if p.is_ident("batch") => batch = true,
            Meta::NameValue(nv) if nv.path.is_ident("config") => keys = config_keys(&nv.value)?,
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "expected `batch` or `config = [\"key\", ...]`",
                ))
            }
        }
    }
    let name = &function.sig.ident;
    let driver = if batch { quote!(process_batch) } else { quote!(process_each) };
    Ok(quote! {
        #function

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

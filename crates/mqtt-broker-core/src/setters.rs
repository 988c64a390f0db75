//! Chainable setters for the configuration structs, which are
//! `#[non_exhaustive]` (they will gain fields) and so cannot be built with a
//! struct literal outside this crate.

/// `setters! { Type; field: type, ... }`: one `fn field(self, value) -> Self`
/// per field, documented by the field it sets.
macro_rules! setters {
    ($type:ident; $($field:ident: $ty:ty,)*) => {
        impl $type {
            $(
                #[doc = concat!("Sets [`", stringify!($type), "::", stringify!($field), "`].")]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

pub(crate) use setters;

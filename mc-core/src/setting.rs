//! `setting!`: the accessors of a settings struct, written once for mc-core's and the
//! transports' settings (exported for them, hidden from the docs).

/// A chained setter `with_<name>` and a getter `<name>` (by reference for what is not `Copy`).
#[doc(hidden)]
#[macro_export]
macro_rules! setting {
    ($(#[$doc:meta])* $with:ident, $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $with(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }

        #[doc = concat!("See [`", stringify!($with), "`](Self::", stringify!($with), ").")]
        pub fn $name(&self) -> $ty {
            self.$name
        }
    };
    ($(#[$doc:meta])* $with:ident, $name:ident: ref $ty:ty) => {
        $(#[$doc])*
        pub fn $with(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }

        #[doc = concat!("See [`", stringify!($with), "`](Self::", stringify!($with), ").")]
        pub fn $name(&self) -> &$ty {
            &self.$name
        }
    };
}

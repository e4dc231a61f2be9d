//! Pure helpers shared by the data types and the command handlers, with no dependency on
//! either: glob matching and Redis's `long double` arithmetic and formatting. They run on
//! whichever thread calls them.

pub mod glob;
pub mod ldouble;

//! Pure helpers shared by the data types and the command handlers, with no dependency on
//! either: glob matching and Redis's `long double` arithmetic and formatting. They run on
//! whichever thread calls them.

pub mod glob;
pub mod ldouble;

/// An OS error as strerror(3) words it ("Address already in use"), without Rust's
/// " (os error 98)" suffix, as Redis prints it.
pub fn os_text(e: &std::io::Error) -> String {
    let t = e.to_string();
    match t.find(" (os error") {
        Some(i) => t[..i].to_string(),
        None => t,
    }
}

//! One module per command; each takes the resolved settings, its arguments and stdout.

pub mod keys;
pub mod query;
pub mod upload;
pub mod uploads;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// An id as one URL path segment (percent-encoded beyond the unreserved characters).
pub fn segment(id: &str) -> String {
    let mut encoded = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A progress bar over `total` bytes on stderr (drawn only when stderr is a terminal).
pub fn byte_bar(total: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

/// A spinner with a message on stderr (drawn only when stderr is a terminal).
pub fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_sent_as_one_path_segment() {
        assert_eq!(super::segment("0f3a-9c_x.y"), "0f3a-9c_x.y");
        assert_eq!(super::segment("../admin?x=1"), "..%2Fadmin%3Fx%3D1");
    }
}

//! The progress bars on stderr, shown only on a terminal: input read (bytes, rate, ETA when
//! the size is known), then patients evaluated (patients done, rate, ETA).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over about `patients` patients; hidden when stderr is not a terminal.
pub fn patients_bar(patients: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(patients);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} patients  {per_sec}  ETA {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// A progress bar over the partition pass, which reads about `bytes` of (uncompressed) input;
/// `exact` when no input is gzipped (otherwise the total is a guess, and only the bytes read
/// and the rate are shown). Hidden when stderr is not a terminal.
pub fn input_bar(bytes: u64, exact: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = if exact {
        (
            ProgressBar::new(bytes),
            "{bar:40} {bytes}/{total_bytes} read  {bytes_per_sec}  ETA {eta}",
        )
    } else {
        (
            ProgressBar::new_spinner(),
            "{spinner} {bytes} read (uncompressed)  {bytes_per_sec}",
        )
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

//! The progress bar on stderr (patients done, rate, ETA), shown only on a terminal.

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

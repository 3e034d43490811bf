//! `--patients-csv`: one row per patient and card, for chart review; with a comparison, a
//! column says whether the card is under both knowledge directories, gained or lost.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::evaluator::Outcome;
use super::tally::sides;
use crate::store::report::csv_cell;

/// A patients CSV being written.
pub struct PatientsCsv {
    out: BufWriter<File>,
    comparing: bool,
}

impl PatientsCsv {
    /// Creates the file at `path` and writes the header.
    pub fn create(path: &Path, comparing: bool) -> Result<PatientsCsv, String> {
        let file =
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut csv = PatientsCsv {
            out: BufWriter::new(file),
            comparing,
        };
        let header = if comparing {
            "patient_id,rule_id,indicator,side\n"
        } else {
            "patient_id,rule_id,indicator\n"
        };
        csv.write(header)?;
        Ok(csv)
    }

    /// Writes the rows of one patient.
    pub fn add(
        &mut self,
        patient: &str,
        base: &Outcome,
        compared: Option<&Outcome>,
    ) -> Result<(), String> {
        let patient = csv_cell(patient);
        let mut rows = String::new();
        match compared.filter(|_| self.comparing) {
            Some(compared) => {
                for (rule, indicator, side) in sides(base, compared) {
                    rows.push_str(&format!(
                        "{patient},{},{indicator},{}\n",
                        csv_cell(rule),
                        side.as_str()
                    ));
                }
            }
            None => {
                for (rule, indicator) in &base.cards {
                    rows.push_str(&format!("{patient},{},{indicator}\n", csv_cell(rule)));
                }
            }
        }
        self.write(&rows)
    }

    /// Flushes the file.
    pub fn finish(mut self) -> Result<(), String> {
        self.out
            .flush()
            .map_err(|e| format!("cannot write the patients CSV: {e}"))
    }

    fn write(&mut self, text: &str) -> Result<(), String> {
        self.out
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the patients CSV: {e}"))
    }
}

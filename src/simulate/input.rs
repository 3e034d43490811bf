//! What a simulation reads: the files of a FHIR Bulk Data export (NDJSON, plain or gzipped),
//! patient Bundles, or CDS Hooks request files, found in one input directory.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The files of an input directory, sorted by name so every run reads them in the same order.
#[derive(Debug, Default)]
pub struct InputFiles {
    /// `*.ndjson` and `*.ndjson.gz`: one resource a line.
    pub ndjson: Vec<PathBuf>,
    /// `*.json`: a Bundle or a CDS Hooks request each.
    pub json: Vec<PathBuf>,
}

impl InputFiles {
    /// Lists the input files of `dir` (not recursively).
    pub fn list(dir: &Path) -> Result<InputFiles, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut files = InputFiles::default();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
                .path();
            let name = file_name(&path);
            if name.ends_with(".ndjson") || name.ends_with(".ndjson.gz") {
                files.ndjson.push(path);
            } else if name.ends_with(".json") {
                files.json.push(path);
            }
        }
        files.ndjson.sort();
        files.json.sort();
        if files.ndjson.is_empty() && files.json.is_empty() {
            return Err(format!(
                "{} holds no *.ndjson, *.ndjson.gz or *.json files",
                dir.display()
            ));
        }
        Ok(files)
    }

    /// Whether any NDJSON file is gzipped (then [`InputFiles::estimated_bytes`] is a guess).
    pub fn any_gzipped(&self) -> bool {
        self.ndjson.iter().any(|path| is_gzip(path))
    }

    /// About how many bytes of JSON the input files hold (gzip counted as eight times its size).
    pub fn estimated_bytes(&self) -> u64 {
        self.ndjson
            .iter()
            .chain(&self.json)
            .map(|path| {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                if is_gzip(path) { size * 8 } else { size }
            })
            .sum()
    }
}

/// The file's name, for messages and for recognising its kind.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_gzip(path: &Path) -> bool {
    file_name(path).ends_with(".gz")
}

/// A reader of a file's bytes, decompressing `.gz` files as it reads.
pub fn open_reader(path: &Path) -> Result<Box<dyn Read + Send>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if is_gzip(path) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            BufReader::with_capacity(1 << 16, file),
        )))
    } else {
        Ok(Box::new(file))
    }
}

//! The spill files of a finished partition pass, read back one at a time and grouped by
//! patient, each patient's resources in input order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::partition::InputCounts;

/// One patient's resources, as JSON lines.
#[derive(Debug, Clone, Default)]
pub struct PatientGroup {
    /// The patient's id.
    pub patient_id: String,
    /// The Patient resource, when the input has one (the first in input order).
    pub patient: Option<String>,
    /// The other resources: (resourceType, JSON), in input order.
    pub resources: Vec<(String, String)>,
}

/// The spill files of a finished partition pass.
pub struct SpillFiles {
    dir: tempfile::TempDir,
    count: usize,
    /// Medication resources by id.
    pub medications: HashMap<String, String>,
    /// What the pass counted.
    pub counts: InputCounts,
}

/// A patient's resources while a spill file is read: (input place, type, JSON).
#[derive(Default)]
struct Gathering {
    patient: Option<(u64, String)>,
    resources: Vec<(u64, String, String)>,
}

impl SpillFiles {
    /// The spill files `count` in `dir`, with what the pass gathered besides.
    pub fn new(
        dir: tempfile::TempDir,
        count: usize,
        medications: HashMap<String, String>,
        counts: InputCounts,
    ) -> SpillFiles {
        SpillFiles {
            dir,
            count,
            medications,
            counts,
        }
    }

    /// How many spill files there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The patients of spill file `index`, sorted by id.
    pub fn read(&self, index: usize) -> Result<Vec<PatientGroup>, String> {
        let path = spill_path(self.dir.path(), index);
        let file = File::open(&path).map_err(|e| format!("cannot read a spill file: {e}"))?;
        let mut gathering: HashMap<String, Gathering> = HashMap::new();
        for line in BufReader::with_capacity(1 << 16, file).lines() {
            let line = line.map_err(|e| format!("cannot read a spill file: {e}"))?;
            let mut parts = line.splitn(4, '\t');
            let (Some(patient), Some(kind), Some(Ok(place)), Some(json)) = (
                parts.next(),
                parts.next(),
                parts.next().map(str::parse::<u64>),
                parts.next(),
            ) else {
                continue;
            };
            let group = gathering.entry(patient.to_owned()).or_default();
            if kind == "Patient" {
                if group
                    .patient
                    .as_ref()
                    .is_none_or(|(first, _)| place < *first)
                {
                    group.patient = Some((place, json.to_owned()));
                }
            } else {
                group
                    .resources
                    .push((place, kind.to_owned(), json.to_owned()));
            }
        }
        let mut groups: Vec<PatientGroup> = gathering
            .into_iter()
            .map(|(patient_id, mut gathered)| {
                gathered.resources.sort_by_key(|(place, _, _)| *place);
                PatientGroup {
                    patient_id,
                    patient: gathered.patient.map(|(_, json)| json),
                    resources: gathered
                        .resources
                        .into_iter()
                        .map(|(_, kind, json)| (kind, json))
                        .collect(),
                }
            })
            .collect();
        groups.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
        Ok(groups)
    }
}

/// The path of spill file `index` in `dir`.
pub fn spill_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("part-{index:04}.tsv"))
}

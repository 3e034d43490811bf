//! The external partition that keeps memory bounded: every resource line is written once to
//! one of several spill files chosen by a hash of its patient's id, then each spill file is
//! read back alone and its lines grouped by patient. Memory is then about one spill file,
//! whatever the size of the input.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::resource_head::{Malformed, ResourceHead, read_head};

/// A line that is not a resource: where it is and what is wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MalformedLine {
    /// The file's name.
    pub file: String,
    /// The line number (1-based); for a `.json` file, 0 when the whole file is unreadable,
    /// else the entry's position (1-based).
    pub line: u64,
    /// What is wrong.
    pub problem: String,
}

/// What the partition pass counted.
#[derive(Debug, Clone, Default)]
pub struct InputCounts {
    /// Resources read (malformed lines not included).
    pub resources: u64,
    /// Patient resources read.
    pub patient_resources: u64,
    /// Lines that were not resources.
    pub malformed: u64,
    /// The first few of them.
    pub malformed_examples: Vec<MalformedLine>,
    /// Resources (other than Medication) that name no patient: counted, skipped.
    pub without_patient: u64,
}

/// How many malformed lines are reported by place.
const MALFORMED_EXAMPLES: usize = 20;

/// Writes resource lines into spill files by patient.
pub struct Partitioner {
    dir: tempfile::TempDir,
    writers: Vec<BufWriter<File>>,
    /// Medication resources by id (they name no patient; they are few), as JSON.
    pub medications: HashMap<String, String>,
    /// What was read so far.
    pub counts: InputCounts,
}

impl Partitioner {
    /// A partitioner with `partitions` spill files in a new temporary directory.
    pub fn new(partitions: usize) -> Result<Partitioner, String> {
        let dir = tempfile::Builder::new()
            .prefix("cramp-cds-simulate-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let writers = (0..partitions.max(1))
            .map(|i| {
                File::create(spill_path(dir.path(), i))
                    .map(|f| BufWriter::with_capacity(1 << 15, f))
                    .map_err(|e| format!("cannot create a spill file: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Partitioner {
            dir,
            writers,
            medications: HashMap::new(),
            counts: InputCounts::default(),
        })
    }

    /// Reads one resource (`json`, one line), found at `file`:`line`.
    pub fn accept(&mut self, json: &str, file: &str, line: u64) -> Result<(), String> {
        let json = json.trim();
        if json.is_empty() {
            return Ok(());
        }
        self.accept_read(json, read_head(json), file, line)
    }

    /// Files one resource whose head was read already (in parallel, by [`partition_ndjson`]).
    fn accept_read(
        &mut self,
        json: &str,
        head: Result<ResourceHead, Malformed>,
        file: &str,
        line: u64,
    ) -> Result<(), String> {
        let head = match head {
            Ok(head) => head,
            Err(problem) => {
                self.malformed(file, line, problem);
                return Ok(());
            }
        };
        self.counts.resources += 1;
        if head.resource_type == "Medication" {
            if let Some(id) = head.id {
                self.medications.insert(id, json.to_owned());
            }
            return Ok(());
        }
        let Some(patient) = head.patient_id else {
            self.counts.without_patient += 1;
            return Ok(());
        };
        if head.resource_type == "Patient" {
            self.counts.patient_resources += 1;
        }
        let index = partition_of(&patient, self.writers.len());
        let writer = &mut self.writers[index];
        writeln!(writer, "{patient}\t{}\t{json}", head.resource_type)
            .map_err(|e| format!("cannot write a spill file: {e}"))
    }

    /// Counts a line that is not a resource.
    pub fn malformed(&mut self, file: &str, line: u64, problem: Malformed) {
        self.malformed_with(file, line, problem.describe().to_owned());
    }

    /// Counts a line (or file) that is not a resource, saying why.
    pub fn malformed_with(&mut self, file: &str, line: u64, problem: String) {
        self.counts.malformed += 1;
        if self.counts.malformed_examples.len() < MALFORMED_EXAMPLES {
            self.counts.malformed_examples.push(MalformedLine {
                file: file.to_owned(),
                line,
                problem,
            });
        }
    }

    /// Ends the pass: the spill files, to read one at a time.
    pub fn finish(mut self) -> Result<SpillFiles, String> {
        for writer in &mut self.writers {
            writer
                .flush()
                .map_err(|e| format!("cannot write a spill file: {e}"))?;
        }
        let count = self.writers.len();
        drop(self.writers);
        Ok(SpillFiles {
            dir: self.dir,
            count,
            medications: self.medications,
            counts: self.counts,
        })
    }
}

/// One patient's resources, as JSON lines.
#[derive(Debug, Clone, Default)]
pub struct PatientGroup {
    /// The patient's id.
    pub patient_id: String,
    /// The Patient resource, when the input has one.
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

impl SpillFiles {
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
        let mut groups: HashMap<String, PatientGroup> = HashMap::new();
        for line in BufReader::with_capacity(1 << 16, file).lines() {
            let line = line.map_err(|e| format!("cannot read a spill file: {e}"))?;
            let mut parts = line.splitn(3, '\t');
            let (Some(patient), Some(kind), Some(json)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let group = groups
                .entry(patient.to_owned())
                .or_insert_with(|| PatientGroup {
                    patient_id: patient.to_owned(),
                    ..PatientGroup::default()
                });
            if kind == "Patient" {
                if group.patient.is_none() {
                    group.patient = Some(json.to_owned());
                }
            } else {
                group.resources.push((kind.to_owned(), json.to_owned()));
            }
        }
        let mut groups: Vec<PatientGroup> = groups.into_values().collect();
        groups.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
        Ok(groups)
    }
}

/// How many spill files suit an input of about `bytes` bytes: about 32 MiB each, at least
/// 16 and at most 512 (the open-file limit).
pub fn partitions_for(bytes: u64) -> usize {
    usize::try_from(bytes / (32 << 20))
        .unwrap_or(usize::MAX)
        .clamp(16, 512)
}

fn spill_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("part-{index:04}.tsv"))
}

/// The spill file of a patient id (FNV-1a hash).
fn partition_of(patient: &str, partitions: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in patient.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions as u64) as usize
}

/// Lines read and parsed together: the heads of a chunk are read on every worker of the pool,
/// then filed in input order.
const CHUNK_LINES: usize = 4096;

/// Streams every line of the NDJSON file `path` into `partitioner`, reading the resources'
/// heads (the costly part: a JSON parse) on the workers of `pool`.
pub fn partition_ndjson(
    path: &Path,
    partitioner: &mut Partitioner,
    pool: &rayon::ThreadPool,
) -> Result<(), String> {
    let name = super::input::file_name(path);
    let mut reader = super::input::open_lines(path)?;
    let mut number = 0u64;
    loop {
        let mut chunk: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK_LINES);
        while chunk.len() < CHUNK_LINES {
            let mut buffer = Vec::new();
            let read = reader
                .read_until(b'\n', &mut buffer)
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            if read == 0 {
                break;
            }
            number += 1;
            chunk.push((number, buffer));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let heads: Vec<Option<Result<ResourceHead, Malformed>>> = pool.install(|| {
            chunk
                .par_iter()
                .map(|(_, bytes)| match std::str::from_utf8(bytes) {
                    Ok(line) if line.trim().is_empty() => None,
                    Ok(line) => Some(read_head(line.trim())),
                    Err(_) => Some(Err(Malformed::NotJson)),
                })
                .collect()
        });
        for ((line_number, bytes), head) in chunk.iter().zip(heads) {
            let Some(head) = head else { continue };
            let json = std::str::from_utf8(bytes)
                .map(str::trim)
                .unwrap_or_default();
            partitioner.accept_read(json, head, &name, *line_number)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_patients_lines_meet_in_one_spill_file_and_others_are_counted() {
        let mut partitioner = Partitioner::new(16).unwrap();
        let lines = [
            r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/a"}}"#,
            r#"{"resourceType":"Patient","id":"b"}"#,
            "not json",
            r#"{"resourceType":"Patient","id":"a"}"#,
            r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"}}"#,
            r#"{"resourceType":"Condition","id":"c2"}"#,
            r#"{"resourceType":"Medication","id":"m1"}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            partitioner.accept(line, "x.ndjson", i as u64 + 1).unwrap();
        }
        let spill = partitioner.finish().unwrap();
        assert_eq!(spill.counts.resources, 6);
        assert_eq!(spill.counts.malformed, 1);
        assert_eq!(spill.counts.malformed_examples[0].line, 3);
        assert_eq!(spill.counts.without_patient, 1);
        assert!(spill.medications.contains_key("m1"));
        let groups: Vec<PatientGroup> = (0..spill.len())
            .flat_map(|i| spill.read(i).unwrap())
            .collect();
        assert_eq!(groups.len(), 2);
        let a = groups.iter().find(|g| g.patient_id == "a").unwrap();
        assert!(a.patient.is_some());
        assert_eq!(a.resources.len(), 2);
        assert_eq!(a.resources[0].0, "Observation");
    }
}

//! The external partition that keeps memory bounded: every resource line is written once to
//! one of several spill files chosen by a hash of its patient's id, then each spill file is
//! read back alone and its lines grouped by patient ([`super::spill`]). Memory is then about
//! one spill file per worker, whatever the size of the input.
//!
//! Several workers file resources at once: each gathers a batch (a block of lines, or a
//! Bundle's entries) into per-file buffers and appends them under that file's lock. Every
//! line carries its place in the input (file and line), so the order of a patient's
//! resources is the input's whatever the order the workers wrote them in.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Mutex;

use super::blocks::Block;
use super::resource_head::{Malformed, ResourceHead, read_head};
use super::spill::{SpillFiles, spill_path};

/// A line that is not a resource: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// The first few of them, in input order.
    pub malformed_examples: Vec<MalformedLine>,
    /// Resources (other than Medication) that name no patient: counted, skipped.
    pub without_patient: u64,
    /// Resources of a type no prefetch template asks for (Encounter, Claim, ...): counted,
    /// skipped, as an EHR would not send them.
    pub not_asked_for: u64,
}

impl InputCounts {
    fn add(&mut self, other: &InputCounts) {
        self.resources += other.resources;
        self.patient_resources += other.patient_resources;
        self.malformed += other.malformed;
        self.without_patient += other.without_patient;
        self.not_asked_for += other.not_asked_for;
    }
}

/// How many malformed lines are reported by place.
const MALFORMED_EXAMPLES: usize = 20;

/// A resource's place in the input: its file's index and its line (or entry) number, as one
/// number that sorts in input order.
pub fn input_place(file: usize, line: u64) -> u64 {
    ((file as u64) << 40) | (line & ((1 << 40) - 1))
}

/// Writes resource lines into spill files by patient; shared by the workers.
pub struct Partitioner {
    dir: tempfile::TempDir,
    writers: Vec<Mutex<BufWriter<File>>>,
    /// The resource types the services read (with Patient and Medication); `None`: all.
    asked_for: Option<BTreeSet<String>>,
    gathered: Mutex<Gathered>,
}

/// What the batches gathered besides spill lines.
#[derive(Default)]
struct Gathered {
    /// Medication resources by id: (input place, JSON); the first in input order wins.
    medications: HashMap<String, (u64, String)>,
    counts: InputCounts,
    /// The first malformed lines in input order, with their places.
    malformed: Vec<(u64, MalformedLine)>,
}

impl Partitioner {
    /// A partitioner with `partitions` spill files in a new temporary directory, filing only
    /// resources of the types `asked_for` names (all when `None`).
    pub fn new(
        partitions: usize,
        asked_for: Option<BTreeSet<String>>,
    ) -> Result<Partitioner, String> {
        let dir = tempfile::Builder::new()
            .prefix("cramp-cds-simulate-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let writers = (0..partitions.max(1))
            .map(|i| {
                File::create(spill_path(dir.path(), i))
                    .map(|f| Mutex::new(BufWriter::with_capacity(1 << 15, f)))
                    .map_err(|e| format!("cannot create a spill file: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Partitioner {
            dir,
            writers,
            asked_for,
            gathered: Mutex::new(Gathered::default()),
        })
    }

    /// Whether resources of type `kind` are counted and dropped (no prefetch asks for them).
    pub fn discards(&self, kind: &str) -> bool {
        kind != "Patient"
            && kind != "Medication"
            && self
                .asked_for
                .as_ref()
                .is_some_and(|asked_for| !asked_for.contains(kind))
    }

    /// A batch to gather resources into before filing them together.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            partitioner: self,
            buffers: vec![Vec::new(); self.writers.len()],
            medications: Vec::new(),
            counts: InputCounts::default(),
            malformed: Vec::new(),
        }
    }

    /// Files every line of `block` (of the file called `name`).
    pub fn file_block(&self, block: &Block, name: &str) -> Result<(), String> {
        let mut batch = self.batch();
        for (line, bytes) in block.lines() {
            let place = input_place(block.file, line);
            match std::str::from_utf8(bytes).map(str::trim) {
                Ok("") => {}
                Ok(json) => batch.add(json, read_head(json), name, place),
                Err(_) => batch.malformed(name, place, Malformed::NotJson.describe().to_owned()),
            }
        }
        batch.commit()
    }

    /// Ends the pass: the spill files, to read one at a time.
    pub fn finish(self) -> Result<SpillFiles, String> {
        for writer in &self.writers {
            lock(writer)
                .flush()
                .map_err(|e| format!("cannot write a spill file: {e}"))?;
        }
        let count = self.writers.len();
        drop(self.writers);
        let gathered = self
            .gathered
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut counts = gathered.counts;
        counts.malformed_examples = gathered.malformed.into_iter().map(|(_, m)| m).collect();
        Ok(SpillFiles::new(
            self.dir,
            count,
            gathered
                .medications
                .into_iter()
                .map(|(id, (_, json))| (id, json))
                .collect(),
            counts,
        ))
    }
}

/// Resources gathered by one worker, filed together by [`Batch::commit`].
pub struct Batch<'p> {
    partitioner: &'p Partitioner,
    /// Spill lines by spill file.
    buffers: Vec<Vec<u8>>,
    /// (id, input place, JSON).
    medications: Vec<(String, u64, String)>,
    counts: InputCounts,
    malformed: Vec<(u64, MalformedLine)>,
}

impl Batch<'_> {
    /// Gathers one resource (`json`, one line) whose head is `head`, found in the file
    /// `name` at `place` (see [`input_place`]).
    pub fn add(
        &mut self,
        json: &str,
        head: Result<ResourceHead, Malformed>,
        name: &str,
        place: u64,
    ) {
        let head = match head {
            Ok(head) => head,
            Err(problem) => return self.malformed(name, place, problem.describe().to_owned()),
        };
        let kind = head.resource_type.as_str();
        if self.partitioner.discards(kind) {
            return self.not_asked_for();
        }
        self.counts.resources += 1;
        if kind == "Medication" {
            if let Some(id) = head.id {
                self.medications.push((id, place, json.to_owned()));
            }
            return;
        }
        let Some(patient) = head.patient_id else {
            self.counts.without_patient += 1;
            return;
        };
        if kind == "Patient" {
            self.counts.patient_resources += 1;
        }
        let buffer = &mut self.buffers[partition_of(&patient, self.partitioner.writers.len())];
        // Ids and resource types hold no tabs or newlines (checked by read_head); the JSON
        // is one line.
        let _ = writeln!(buffer, "{patient}\t{kind}\t{place}\t{json}");
    }

    /// Counts a resource of a type no prefetch asks for (read, not filed).
    pub fn not_asked_for(&mut self) {
        self.counts.resources += 1;
        self.counts.not_asked_for += 1;
    }

    /// Counts a line (or file, or entry) that is not a resource, saying why.
    pub fn malformed(&mut self, name: &str, place: u64, problem: String) {
        self.counts.malformed += 1;
        if self.malformed.len() < MALFORMED_EXAMPLES {
            self.malformed.push((
                place,
                MalformedLine {
                    file: name.to_owned(),
                    line: place & ((1 << 40) - 1),
                    problem,
                },
            ));
        }
    }

    /// Appends the gathered lines to their spill files and adds the counts.
    pub fn commit(self) -> Result<(), String> {
        let Batch {
            partitioner,
            buffers,
            medications,
            counts,
            malformed,
        } = self;
        for (index, buffer) in buffers.iter().enumerate() {
            if !buffer.is_empty() {
                lock(&partitioner.writers[index])
                    .write_all(buffer)
                    .map_err(|e| format!("cannot write a spill file: {e}"))?;
            }
        }
        let mut gathered = lock(&partitioner.gathered);
        gathered.counts.add(&counts);
        for (id, place, json) in medications {
            let kept = gathered
                .medications
                .entry(id)
                .or_insert((place, String::new()));
            if kept.1.is_empty() || place < kept.0 {
                *kept = (place, json);
            }
        }
        if !malformed.is_empty() {
            gathered.malformed.extend(malformed);
            gathered.malformed.sort_by_key(|(place, _)| *place);
            gathered.malformed.truncate(MALFORMED_EXAMPLES);
        }
        Ok(())
    }
}

/// Locks `mutex`, going on when another worker panicked (the data is counts and buffers).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many spill files suit an input of about `bytes` bytes: about 32 MiB each, at least
/// 16 and at most 512 (the open-file limit).
pub fn partitions_for(bytes: u64) -> usize {
    usize::try_from(bytes / (32 << 20))
        .unwrap_or(usize::MAX)
        .clamp(16, 512)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::spill::PatientGroup;

    fn file(partitioner: &Partitioner, lines: &[&str], file: usize) {
        let mut batch = partitioner.batch();
        for (i, line) in lines.iter().enumerate() {
            batch.add(
                line,
                read_head(line),
                "x.ndjson",
                input_place(file, i as u64 + 1),
            );
        }
        batch.commit().unwrap();
    }

    #[test]
    fn one_patients_lines_meet_in_one_spill_file_and_others_are_counted() {
        let asked_for = ["Observation", "Condition"].map(str::to_owned).into();
        let partitioner = Partitioner::new(16, Some(asked_for)).unwrap();
        file(
            &partitioner,
            &[
                r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/a"}}"#,
                r#"{"resourceType":"Patient","id":"b"}"#,
                "not json",
                r#"{"resourceType":"Patient","id":"a"}"#,
                r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"}}"#,
                r#"{"resourceType":"Condition","id":"c2"}"#,
                r#"{"resourceType":"Medication","id":"m1"}"#,
                r#"{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/a"}}"#,
            ],
            0,
        );
        let spill = partitioner.finish().unwrap();
        assert_eq!(spill.counts.resources, 7);
        assert_eq!(spill.counts.malformed, 1);
        assert_eq!(spill.counts.malformed_examples[0].line, 3);
        assert_eq!(spill.counts.without_patient, 1);
        assert_eq!(spill.counts.not_asked_for, 1);
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

    #[test]
    fn a_patients_resources_come_back_in_input_order_whatever_order_they_were_filed_in() {
        let partitioner = Partitioner::new(4, None).unwrap();
        let observation = |id: &str| {
            format!(
                r#"{{"resourceType":"Observation","id":"{id}","subject":{{"reference":"Patient/p"}}}}"#
            )
        };
        // The later file's batch is committed first, then the earlier file's, out of order.
        file(
            &partitioner,
            &[&observation("late-1"), &observation("late-2")],
            1,
        );
        file(
            &partitioner,
            &[
                &observation("early-1"),
                r#"{"resourceType":"Patient","id":"p"}"#,
            ],
            0,
        );
        let spill = partitioner.finish().unwrap();
        let groups: Vec<PatientGroup> = (0..spill.len())
            .flat_map(|i| spill.read(i).unwrap())
            .collect();
        let ids: Vec<String> = groups[0]
            .resources
            .iter()
            .map(|(_, json)| read_head(json).unwrap().id.unwrap())
            .collect();
        assert_eq!(ids, ["early-1", "late-1", "late-2"]);
    }

    #[test]
    fn the_malformed_lines_reported_are_the_first_in_input_order() {
        let partitioner = Partitioner::new(4, None).unwrap();
        let junk = vec!["junk"; MALFORMED_EXAMPLES + 5];
        file(&partitioner, &junk, 2);
        file(&partitioner, &["junk", "{}"], 1);
        let spill = partitioner.finish().unwrap();
        assert_eq!(spill.counts.malformed as usize, MALFORMED_EXAMPLES + 7);
        let first: Vec<u64> = spill.counts.malformed_examples[..3]
            .iter()
            .map(|m| m.line)
            .collect();
        assert_eq!(first, [1, 2, 1]);
        assert_eq!(
            spill.counts.malformed_examples[1].problem,
            "no resourceType"
        );
        assert_eq!(spill.counts.malformed_examples.len(), MALFORMED_EXAMPLES);
    }
}

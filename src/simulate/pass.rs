//! The partition pass over an input directory on several threads. Reader threads cut the
//! NDJSON files into blocks of lines (decompressing as they go); workers read the blocks'
//! resources and the `.json` files (Bundles, single resources, CDS Hooks requests) and file
//! them with the [`Partitioner`]. A bounded queue between them keeps memory flat.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};

use indicatif::ProgressBar;

use super::blocks::{BLOCK_BYTES, Block, read_blocks};
use super::bundle::{JsonFile, read_json_file};
use super::input::{InputFiles, file_name};
use super::partition::{Partitioner, input_place};
use super::resource_head::read_head;

/// One piece of work for a worker.
enum Work {
    /// Lines of the NDJSON file with this index.
    Lines(Block),
    /// The `.json` file with this index (counted after the NDJSON files).
    Json(usize),
}

/// The pass's shared state.
struct Pass<'a> {
    files: &'a InputFiles,
    partitioner: &'a Partitioner,
    /// Set at the first error: everyone stops.
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    /// The CDS Hooks request files found: (file index, path).
    requests: Mutex<Vec<(usize, PathBuf)>>,
    /// Advanced by the bytes of every block and file filed.
    progress: &'a ProgressBar,
}

impl Pass<'_> {
    fn fail(&self, message: String) {
        self.failed.store(true, Ordering::Relaxed);
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(message);
    }

    fn stopped(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Files every resource of `files` with `partitioner`, on `jobs` workers and up to `jobs`
/// readers, advancing `progress` by the bytes read; returns the CDS Hooks request files
/// found, in file order.
pub fn partition_inputs(
    files: &InputFiles,
    partitioner: &Partitioner,
    jobs: usize,
    progress: &ProgressBar,
) -> Result<Vec<PathBuf>, String> {
    let jobs = jobs.max(1);
    let pass = Pass {
        files,
        partitioner,
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        requests: Mutex::new(Vec::new()),
        progress,
    };
    let (sender, receiver) = sync_channel::<Work>(jobs * 2);
    let receiver = Mutex::new(receiver);
    let next_ndjson = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| work(&pass, &receiver));
        }
        for _ in 0..jobs.min(files.ndjson.len()) {
            let sender = sender.clone();
            scope.spawn(|| read(&pass, &next_ndjson, sender));
        }
        for index in 0..files.json.len() {
            if pass.stopped() || sender.send(Work::Json(files.ndjson.len() + index)).is_err() {
                break;
            }
        }
        drop(sender);
    });
    if let Some(error) = pass
        .error
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        return Err(error);
    }
    let mut requests = pass
        .requests
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    requests.sort();
    Ok(requests.into_iter().map(|(_, path)| path).collect())
}

/// A reader: takes the next NDJSON file not yet taken and queues its blocks, until none is left.
fn read(pass: &Pass, next: &AtomicUsize, sender: SyncSender<Work>) {
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(path) = pass.files.ndjson.get(index) else {
            return;
        };
        let sent = read_blocks(path, index, BLOCK_BYTES, |block| {
            if pass.stopped() {
                return Err(String::new());
            }
            sender.send(Work::Lines(block)).map_err(|_| String::new())
        });
        if let Err(message) = sent {
            if !message.is_empty() {
                pass.fail(message);
            }
            return;
        }
    }
}

/// A worker: files what the queue holds until it is empty and every reader is done.
fn work(pass: &Pass, receiver: &Mutex<Receiver<Work>>) {
    loop {
        let next = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok(work) = next else { return };
        if pass.stopped() {
            continue;
        }
        let filed = match work {
            Work::Lines(block) => {
                let name = file_name(&pass.files.ndjson[block.file]);
                pass.progress.inc(block.bytes.len() as u64);
                pass.partitioner.file_block(&block, &name)
            }
            Work::Json(index) => file_json(pass, index),
        };
        if let Err(message) = filed {
            pass.fail(message);
        }
    }
}

/// Reads the `.json` input file `index`: a CDS Hooks request is kept to evaluate as it is, a
/// Bundle's resources (or a single resource) are filed.
fn file_json(pass: &Pass, index: usize) -> Result<(), String> {
    let path = &pass.files.json[index - pass.files.ndjson.len()];
    let name = file_name(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    pass.progress.inc(text.len() as u64);
    let mut batch = pass.partitioner.batch();
    match read_json_file(&text) {
        JsonFile::NotJson => {
            batch.malformed(&name, input_place(index, 0), "not a JSON object".to_owned())
        }
        JsonFile::Request => {
            pass.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((index, path.to_owned()));
        }
        JsonFile::Bundle(entries) => entries.visit_entries(
            |head| !pass.partitioner.discards(&head.resource_type),
            |entry, resource| {
                let place = input_place(index, entry as u64 + 1);
                match resource {
                    Ok((head, Some(json))) => batch.add(&json, Ok(head), &name, place),
                    Ok((_, None)) => batch.not_asked_for(),
                    Err(problem) => batch.malformed(&name, place, problem.to_owned()),
                }
            },
        ),
        JsonFile::UnreadableBundle(problem) => {
            batch.malformed(&name, input_place(index, 0), problem.to_owned())
        }
        JsonFile::Resource(json) => {
            // In JSON (this text parsed), a raw line break can only be whitespace.
            let json = json.replace(['\n', '\r'], " ");
            batch.add(&json, read_head(&json), &name, input_place(index, 1));
        }
    }
    batch.commit()
}

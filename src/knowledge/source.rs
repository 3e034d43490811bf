//! Where the knowledge files come from: the copy of `cds-hooks/` built into the
//! binary, or a directory a deployment points at. Not for parsing them.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use super::KnowledgeError;

static BUILT_IN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/cds-hooks");

/// A knowledge file: its path relative to the knowledge root, and its bytes.
#[derive(Debug, Clone)]
pub struct KnowledgeFile {
    /// Path relative to the knowledge root, with `/` separators (e.g. `rules/cirrhosis-cramps.toml`).
    pub path: String,
    /// The file's contents.
    pub contents: Vec<u8>,
}

/// The origin of the knowledge base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnowledgeSource {
    /// The `cds-hooks/` directory compiled into the binary.
    BuiltIn,
    /// A directory on disk laid out like `cds-hooks/`.
    Directory(PathBuf),
}

impl KnowledgeSource {
    /// A name for messages: `built-in` or the directory.
    pub fn describe(&self) -> String {
        match self {
            KnowledgeSource::BuiltIn => "built-in knowledge".to_owned(),
            KnowledgeSource::Directory(dir) => dir.display().to_string(),
        }
    }

    /// Every file of the knowledge base, sorted by path.
    pub fn files(&self) -> Result<Vec<KnowledgeFile>, KnowledgeError> {
        let mut files = Vec::new();
        match self {
            KnowledgeSource::BuiltIn => collect_built_in(&BUILT_IN, &mut files),
            KnowledgeSource::Directory(root) => collect_directory(root, root, &mut files)?,
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

fn collect_built_in(dir: &Dir<'static>, files: &mut Vec<KnowledgeFile>) {
    for file in dir.files() {
        files.push(KnowledgeFile {
            path: file.path().to_string_lossy().replace('\\', "/"),
            contents: file.contents().to_vec(),
        });
    }
    for sub in dir.dirs() {
        collect_built_in(sub, files);
    }
}

fn collect_directory(
    root: &Path,
    dir: &Path,
    files: &mut Vec<KnowledgeFile>,
) -> Result<(), KnowledgeError> {
    let unreadable = |path: &Path| {
        let file = path.display().to_string();
        move |source| KnowledgeError::Read { file, source }
    };
    let entries = std::fs::read_dir(dir).map_err(unreadable(dir))?;
    for entry in entries {
        let entry = entry.map_err(unreadable(dir))?;
        let path = entry.path();
        if path.is_dir() {
            collect_directory(root, &path, files)?;
        } else {
            let contents = std::fs::read(&path).map_err(unreadable(&path))?;
            let relative = path.strip_prefix(root).unwrap_or(&path);
            files.push(KnowledgeFile {
                path: relative.to_string_lossy().replace('\\', "/"),
                contents,
            });
        }
    }
    Ok(())
}

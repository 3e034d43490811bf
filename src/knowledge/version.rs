//! Which knowledge is loaded: a content hash over every knowledge file (its relative path
//! and its bytes, in path order, so the same knowledge always gives the same hash, whether
//! built in or read from a directory), plus the optional human version of
//! `knowledge.toml`. Cards, the history, discovery and the admin endpoints name it. Not for
//! loading the rest of the knowledge (see the parent module).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KnowledgeError;
use super::keys::{Schema, fields_of, leaves};
use super::source::KnowledgeFile;

/// The file that names the knowledge's human version, at the knowledge root (optional).
pub const VERSION_FILE: &str = "knowledge.toml";

/// How many hex digits of the hash the short form keeps.
pub const SHORT_HASH_LEN: usize = 12;

/// The longest `version` accepted, in characters.
pub const MAX_VERSION_LEN: usize = 64;

/// The key of the card and service `extension` that carries the version.
pub const EXTENSION_KEY: &str = "org.cramp-cds.knowledge";

/// The keys of `knowledge.toml`.
pub const VERSION_SCHEMA: Schema = Schema {
    name: "knowledge.toml",
    keys: fields_of::<VersionFile>,
    child: leaves,
};

/// `knowledge.toml`: the human version of the knowledge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    /// The version people use for this knowledge, e.g. `2026.12.1`.
    pub version: String,
    /// When it was released, `YYYY-MM-DD`.
    pub released: Option<String>,
}

/// The version of a loaded knowledge base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeVersion {
    /// `knowledge.toml`'s `version`, when the file is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `knowledge.toml`'s `released`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// The first [`SHORT_HASH_LEN`] hex digits of the content hash.
    pub hash: String,
    /// The whole SHA-256 content hash, hex.
    #[serde(skip)]
    pub full_hash: String,
}

impl KnowledgeVersion {
    /// The version of the knowledge made of `files`, reading and checking `knowledge.toml`
    /// when it is among them.
    pub fn of(files: &[KnowledgeFile]) -> Result<KnowledgeVersion, KnowledgeError> {
        let full_hash = content_hash(files);
        let human = match files.iter().find(|f| f.path == VERSION_FILE) {
            Some(file) => Some(read_version_file(file)?),
            None => None,
        };
        Ok(KnowledgeVersion {
            version: human.as_ref().map(|h| h.version.clone()),
            released: human.and_then(|h| h.released),
            hash: full_hash[..SHORT_HASH_LEN].to_owned(),
            full_hash,
        })
    }

    /// The version as one string, as the history stores it and the report groups by it:
    /// `{version}+{hash}` (e.g. `2026.12.1+3f2a9c1b0d4e`), or the short hash alone when the
    /// knowledge has no `knowledge.toml`.
    pub fn id(&self) -> String {
        match &self.version {
            Some(version) => format!("{version}+{}", self.hash),
            None => self.hash.clone(),
        }
    }

    /// The `extension` of a card or service definition that names this version:
    /// `{"org.cramp-cds.knowledge": {"version": .., "released": .., "hash": ..}}`.
    pub fn extension(&self) -> serde_json::Value {
        let mut extension = serde_json::Map::new();
        extension.insert(
            EXTENSION_KEY.to_owned(),
            serde_json::to_value(self).unwrap_or_default(),
        );
        serde_json::Value::Object(extension)
    }
}

/// SHA-256 over each file's path and bytes, each prefixed with its length so that no two
/// different sets of files hash alike, in path order.
fn content_hash(files: &[KnowledgeFile]) -> String {
    let mut sorted: Vec<&KnowledgeFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    for file in sorted {
        hasher.update((file.path.len() as u64).to_be_bytes());
        hasher.update(file.path.as_bytes());
        hasher.update((file.contents.len() as u64).to_be_bytes());
        hasher.update(&file.contents);
    }
    hex::encode(hasher.finalize())
}

fn read_version_file(file: &KnowledgeFile) -> Result<VersionFile, KnowledgeError> {
    let text = super::text(file)?;
    let parsed: VersionFile = super::read_table(&file.path, &text, VERSION_SCHEMA)?;
    let version = parsed.version.trim();
    if version.is_empty() || version.chars().count() > MAX_VERSION_LEN {
        return Err(KnowledgeError::new(
            &file.path,
            format!("version must be 1 to {MAX_VERSION_LEN} characters"),
        ));
    }
    if let Some(c) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(KnowledgeError::new(
            &file.path,
            format!(
                "version '{version}' has '{c}': use letters, digits, '.', '-' and '_' (e.g. \"2026.12.1\")"
            ),
        ));
    }
    if let Some(released) = &parsed.released
        && chrono::NaiveDate::parse_from_str(released, "%Y-%m-%d").is_err()
    {
        return Err(KnowledgeError::new(
            &file.path,
            format!("released '{released}' is not a date (YYYY-MM-DD)"),
        ));
    }
    Ok(VersionFile {
        version: version.to_owned(),
        released: parsed.released,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str) -> KnowledgeFile {
        KnowledgeFile {
            path: path.to_owned(),
            contents: contents.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_hash_depends_on_paths_and_bytes_but_not_on_the_order_files_come_in() {
        let a = [file("rules/a.toml", "x = 1"), file("rules/b.toml", "y = 2")];
        let b = [file("rules/b.toml", "y = 2"), file("rules/a.toml", "x = 1")];
        let hash = |files: &[KnowledgeFile]| KnowledgeVersion::of(files).unwrap().hash;
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), SHORT_HASH_LEN);
        let edited = [file("rules/a.toml", "x = 2"), file("rules/b.toml", "y = 2")];
        assert_ne!(hash(&a), hash(&edited));
        let renamed = [file("rules/c.toml", "x = 1"), file("rules/b.toml", "y = 2")];
        assert_ne!(hash(&a), hash(&renamed));
        // Bytes moved from one file's name to its contents do not hash alike.
        let shifted = [file("rules/a.tom", "lx = 1"), file("rules/b.toml", "y = 2")];
        assert_ne!(hash(&a), hash(&shifted));
    }

    #[test]
    fn the_human_version_is_read_from_knowledge_toml_and_joined_to_the_hash() {
        let files = [
            file("rules/a.toml", "x = 1"),
            file(
                VERSION_FILE,
                "version = \"2026.12.1\"\nreleased = \"2026-12-01\"\n",
            ),
        ];
        let version = KnowledgeVersion::of(&files).unwrap();
        assert_eq!(version.version.as_deref(), Some("2026.12.1"));
        assert_eq!(version.released.as_deref(), Some("2026-12-01"));
        assert_eq!(version.id(), format!("2026.12.1+{}", version.hash));
        let extension = version.extension();
        assert_eq!(extension[EXTENSION_KEY]["version"], "2026.12.1");
        assert_eq!(extension[EXTENSION_KEY]["hash"], version.hash.as_str());
        let without = KnowledgeVersion::of(&files[..1]).unwrap();
        assert_eq!(without.id(), without.hash);
        assert!(extension_has_no_version(&without.extension()));
    }

    fn extension_has_no_version(extension: &serde_json::Value) -> bool {
        extension[EXTENSION_KEY].get("version").is_none()
    }

    #[test]
    fn the_built_in_knowledge_and_the_same_files_on_disk_have_the_same_version() {
        use crate::knowledge::{Knowledge, KnowledgeSource};
        let built_in = Knowledge::load(&KnowledgeSource::BuiltIn).unwrap();
        let on_disk = Knowledge::load(&KnowledgeSource::Directory(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks"),
        ))
        .unwrap();
        assert_eq!(built_in.version, on_disk.version);
        assert!(
            built_in.version.version.is_some(),
            "cds-hooks/knowledge.toml"
        );
    }

    #[test]
    fn a_bad_knowledge_toml_is_refused_naming_the_file_and_the_problem() {
        for (text, problem) in [
            ("version = \"\"", "version must be 1 to 64 characters"),
            ("version = \"1 2\"", "version '1 2' has ' '"),
            (
                "version = \"1\"\nreleased = \"December\"",
                "released 'December' is not a date",
            ),
            ("version = \"1\"\nrelease = \"2026-12-01\"", "did you mean"),
            ("released = \"2026-12-01\"", "version"),
        ] {
            let error = KnowledgeVersion::of(&[file(VERSION_FILE, text)]).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.file(), VERSION_FILE, "{message}");
            assert!(message.contains(problem), "{text}: {message}");
        }
    }
}

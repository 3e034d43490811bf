//! `docs/conformance.md` against the requirement list it answers
//! (`docs/cds-hooks-service-requirements.csv`, a copy of the shared list) and against the tests it names: every
//! requirement once, with its level, a status and a proof or a reason; every test named exists;
//! the counts are the table's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The requirement list, kept in the repository so the test runs on any clone.
const REQUIREMENTS_CSV: &str = "docs/cds-hooks-service-requirements.csv";

/// The shared specification's list, beside the repository when it is checked out with it.
const SHARED_REQUIREMENTS_CSV: &str = "../shared/cds-hooks-service-requirements.csv";

const STATUSES: [&str; 3] = ["proven", "not applicable", "not met"];

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One requirement of the CSV.
#[derive(Debug)]
struct Requirement {
    key: String,
    level: String,
}

/// One row of the conformance table.
#[derive(Debug)]
struct TableRow {
    key: String,
    level: String,
    status: String,
    proof: String,
}

/// Records of a CSV text (RFC 4180: fields may be quoted, a quoted field may hold commas,
/// line breaks and doubled quotes).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "the CSV ends inside a quoted field");
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

fn requirements() -> Vec<Requirement> {
    let path = crate_root().join(REQUIREMENTS_CSV);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the requirement list {} cannot be read ({e})",
            path.display()
        )
    });
    let mut records = parse_csv(&text).into_iter();
    let header = records.next().expect("a header line");
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("the CSV has no '{name}' column: {header:?}"))
    };
    let (set, id, level) = (column("set"), column("id"), column("conformance"));
    records
        .filter(|r| r.iter().any(|f| !f.is_empty()))
        .map(|r| {
            assert_eq!(
                r.len(),
                header.len(),
                "a CSV record of another width: {r:?}"
            );
            Requirement {
                key: format!("{}#{}", r[set], r[id]),
                level: r[level].clone(),
            }
        })
        .collect()
}

/// The cells of a Markdown table line, split on `|` not escaped as `\|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_owned()).collect()
}

fn document() -> String {
    let path = crate_root().join("docs/conformance.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The requirement rows: table lines whose first cell is a requirement id in backticks.
fn table_rows(document: &str) -> Vec<TableRow> {
    document
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells = cells(line);
            assert_eq!(cells.len(), 5, "a table row of another width: {line}");
            TableRow {
                key: cells[0].trim_matches('`').to_owned(),
                level: cells[2].clone(),
                status: cells[3].clone(),
                proof: cells[4].clone(),
            }
        })
        .collect()
}

/// Every Markdown link `[name](../path)` of `text` whose name is a Rust identifier (maybe in
/// backticks) and whose target is a Rust file, as (name, path from the crate root). The CSV's
/// own brackets (`[When sending a Card object,]`) are not links.
fn test_links(text: &str) -> Vec<(String, String)> {
    let mut links = Vec::new();
    for (start, _) in text.match_indices('[') {
        let rest = &text[start + 1..];
        let Some(end) = rest.find(']') else { continue };
        let name = rest[..end].trim_matches('`');
        let Some(target) = rest[end + 1..].strip_prefix('(') else {
            continue;
        };
        let Some(close) = target.find(')') else {
            continue;
        };
        let is_identifier =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some(path) = target[..close].strip_prefix("../")
            && is_identifier
            && path.ends_with(".rs")
        {
            links.push((name.to_owned(), path.to_owned()));
        }
    }
    links
}

/// Whether `source` declares `fn name` (followed by its parameters or generics).
fn declares_fn(source: &str, name: &str) -> bool {
    let needle = format!("fn {name}");
    source.match_indices(&needle).any(|(at, _)| {
        let before = source[..at].chars().next_back();
        let after = source[at + needle.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric() && c != '_') && matches!(after, Some('(' | '<'))
    })
}

/// The counts section: level -> [proven, not applicable, not met, total].
fn stated_counts(document: &str) -> BTreeMap<String, [usize; 4]> {
    let section = document
        .split("\n## Counts")
        .nth(1)
        .expect("docs/conformance.md has a '## Counts' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .map(cells)
        .filter(|cells| cells[0] != "Level")
        .map(|cells| {
            assert_eq!(cells.len(), 5, "a counts row of another width: {cells:?}");
            let number = |i: usize| {
                cells[i]
                    .parse::<usize>()
                    .unwrap_or_else(|_| panic!("not a count: {cells:?}"))
            };
            (
                cells[0].clone(),
                [number(1), number(2), number(3), number(4)],
            )
        })
        .collect()
}

#[test]
fn the_conformance_table_names_every_requirement_once_and_only_existing_tests() {
    let requirements = requirements();
    assert_eq!(
        requirements.len(),
        143,
        "the issue's list has 143 requirements"
    );
    let document = document();
    let rows = table_rows(&document);

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *seen.entry(row.key.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "requirements listed more than once: {twice:?}"
    );
    let listed: BTreeSet<&str> = seen.keys().copied().collect();
    let wanted: BTreeSet<&str> = requirements.iter().map(|r| r.key.as_str()).collect();
    let missing: Vec<_> = wanted.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "requirements not in the table: {missing:?}"
    );
    let unknown: Vec<_> = listed.difference(&wanted).collect();
    assert!(
        unknown.is_empty(),
        "table rows for no requirement: {unknown:?}"
    );

    let by_key: BTreeMap<&str, &TableRow> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut counts: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for requirement in &requirements {
        let row = by_key[requirement.key.as_str()];
        assert_eq!(row.level, requirement.level, "{}: the level", row.key);
        let status = STATUSES
            .iter()
            .position(|s| *s == row.status)
            .unwrap_or_else(|| {
                panic!(
                    "{}: status '{}' is none of {STATUSES:?}",
                    row.key, row.status
                )
            });
        let links = test_links(&row.proof);
        match status {
            0 => assert!(
                !links.is_empty(),
                "{}: proven, but no test is named",
                row.key
            ),
            _ => {
                let reason_words = row
                    .proof
                    .split("(see ")
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .count();
                assert!(
                    reason_words >= 5,
                    "{}: '{}' needs a reason: {}",
                    row.key,
                    row.status,
                    row.proof
                );
            }
        }
        if status == 2 && requirement.level.starts_with("SHALL") {
            assert!(
                row.proof.contains("**Issue:**"),
                "{}: a {} requirement not met needs an issue-ready description",
                row.key,
                requirement.level
            );
        }
        for level in [requirement.level.as_str(), "all"] {
            let count = counts.entry(level.to_owned()).or_default();
            count[status] += 1;
            count[3] += 1;
        }
    }

    let mut absent = Vec::new();
    for (name, path) in test_links(&document) {
        assert!(
            path.starts_with("tests/") || path.starts_with("src/"),
            "{name}: tests live under tests/ or src/, not {path}"
        );
        let source = std::fs::read_to_string(crate_root().join(&path))
            .unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
        if !declares_fn(&source, &name) {
            absent.push(format!("{path}: fn {name}"));
        }
    }
    absent.sort();
    absent.dedup();
    assert!(
        absent.is_empty(),
        "tests named in the table that do not exist:\n{}",
        absent.join("\n")
    );

    assert_eq!(
        stated_counts(&document),
        counts,
        "the counts section against the table"
    );
}

#[test]
fn the_csv_reader_keeps_quoted_commas_quotes_and_line_breaks() {
    let records = parse_csv("a,b\n\"x, \"\"y\"\"\nz\",2\r\nlast,\"\"\n");
    assert_eq!(
        records,
        [
            vec!["a".to_owned(), "b".to_owned()],
            vec!["x, \"y\"\nz".to_owned(), "2".to_owned()],
            vec!["last".to_owned(), String::new()],
        ]
    );
    assert!(declares_fn("async fn some_test() {}", "some_test"));
    assert!(!declares_fn("async fn some_test_longer() {}", "some_test"));
    assert!(!declares_fn("fn not_some_test() {}", "some_test"));
    assert_eq!(
        cells("| `a#1` | x \\| y | SHALL |"),
        ["`a#1`", "x | y", "SHALL"]
    );
}

#[test]
fn the_repositorys_requirement_list_is_the_shared_specifications() {
    let shared = crate_root().join(SHARED_REQUIREMENTS_CSV);
    // Without the shared specification beside the repository there is nothing to compare.
    let Ok(shared) = std::fs::read(&shared) else {
        return;
    };
    let copy = std::fs::read(crate_root().join(REQUIREMENTS_CSV)).unwrap();
    assert!(
        copy == shared,
        "{REQUIREMENTS_CSV} differs from {SHARED_REQUIREMENTS_CSV}: copy it again and update docs/conformance.md"
    );
}

//! Where a problem in a knowledge file is, and what it is: the line, the path of the key
//! (`when.all[1].lab.analyte`), the problem, and for an unknown name the nearest known one
//! ("did you mean 'lab-magnesium'?"). Not for deciding what is valid (see `rule`, `criteria`,
//! `analyte`, `keys`).

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// What kind of name was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A value set id (`valuesets/*.json`).
    ValueSet,
    /// An analyte id (`analytes.toml`).
    Analyte,
    /// A named criterion (`definitions.toml`).
    NamedCriterion,
    /// A rule id.
    Rule,
    /// A hook name.
    Hook,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::ValueSet => "value set",
            NameKind::Analyte => "analyte",
            NameKind::NamedCriterion => "named criterion",
            NameKind::Rule => "rule",
            NameKind::Hook => "hook",
        })
    }
}

/// What is wrong at one place of a knowledge file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A name that is not defined anywhere.
    #[error("unknown {kind} '{name}'{}", did_you_mean(suggestion))]
    Unknown {
        /// What kind of name.
        kind: NameKind,
        /// The name as written.
        name: String,
        /// The nearest known name, when one is close.
        suggestion: Option<String>,
    },
    /// A threshold unit the analyte does not list.
    #[error(
        "threshold unit '{unit}' is not a known unit of analyte '{analyte}' (see analytes.toml){}",
        did_you_mean(suggestion)
    )]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The analyte.
        analyte: String,
        /// The nearest listed unit, when one is close.
        suggestion: Option<String>,
    },
    /// A key the table does not have.
    #[error("unknown key '{key}' in {table}{}", did_you_mean(suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Which table, e.g. `a lab criterion`.
        table: &'static str,
        /// The nearest key the table has, when one is close.
        suggestion: Option<String>,
    },
    /// A key the language no longer has.
    #[error("'{key}' is no longer part of the rule language: {instead}")]
    Retired {
        /// The key.
        key: String,
        /// What to write instead.
        instead: &'static str,
    },
    /// A criterion that can never match where it is used.
    #[error("{0}")]
    NeverFires(String),
    /// Anything else, said in words.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Problem::Invalid(message)
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Self {
        Problem::Invalid(message.to_owned())
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!("; did you mean '{s}'?"))
        .unwrap_or_default()
}

/// A problem at a place in a knowledge file (the caller names the file).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Diagnostic {
    /// The file is not valid TOML, or a value has the wrong type or is missing.
    #[error("line {line}: {}", source.message())]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What the TOML reader said.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A key or value that is well-formed but wrong.
    #[error("{}{}{problem}", line.map(|l| format!("line {l}: ")).unwrap_or_default(), if path.is_empty() { String::new() } else { format!("{path}: ") })]
    At {
        /// 1-based line, when known.
        line: Option<usize>,
        /// The key path, e.g. `when.all[1].lab.analyte`.
        path: String,
        /// What is wrong.
        #[source]
        problem: Problem,
    },
}

impl Diagnostic {
    /// A problem at `path`; the line is filled in later by [`Diagnostic::locate`].
    pub fn at(path: impl Into<String>, problem: impl Into<Problem>) -> Self {
        Diagnostic::At {
            line: None,
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// A TOML reading error, with its line worked out from its span.
    pub fn syntax(text: &str, source: toml::de::Error) -> Self {
        let line = source
            .span()
            .map(|span| line_of_offset(text, span.start))
            .unwrap_or(1);
        Diagnostic::Syntax {
            line,
            source: Box::new(source),
        }
    }

    /// Fills in the line of the key path from the parsed document.
    pub fn locate(self, text: &str, document: &DeTable<'_>) -> Self {
        match self {
            Diagnostic::At {
                line: None,
                path,
                problem,
            } => Diagnostic::At {
                line: span_of_path(document, &path).map(|s| line_of_offset(text, s.start)),
                path,
                problem,
            },
            other => other,
        }
    }

    /// What is wrong, without where.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Diagnostic::At { problem, .. } => Some(problem),
            Diagnostic::Syntax { .. } => None,
        }
    }

    /// The line, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Diagnostic::At { line, .. } => *line,
            Diagnostic::Syntax { line, .. } => Some(*line),
        }
    }
}

/// The 1-based line of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .unwrap_or(text)
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Joins a key path and a key: `when` + `lab` is `when.lab`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The span of the deepest part of `path` (`when.all[1].lab.analyte`) found in the document:
/// the key itself when it is there, else the nearest enclosing key.
pub fn span_of_path(document: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut table = document;
    let mut found: Option<Range<usize>> = None;
    for segment in path.split('.') {
        let (key, indices) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        let Some((key_span, mut value)) = entry(table, key) else {
            return found;
        };
        found = Some(key_span);
        for index in indices
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            let DeValue::Array(items) = value.get_ref() else {
                return found;
            };
            let Some(item) = items.get(index) else {
                return found;
            };
            found = Some(item.span());
            value = item;
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return found,
        }
    }
    found
}

fn entry<'a, 'i>(
    table: &'a DeTable<'i>,
    key: &str,
) -> Option<(Range<usize>, &'a Spanned<DeValue<'i>>)> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, v)| (k.span(), v))
}

/// The known name nearest to `name`, when it is close enough to be a likely typo.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lowered = name.to_lowercase();
    known
        .into_iter()
        .map(|candidate| {
            (
                strsim::normalized_damerau_levenshtein(&lowered, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(score, candidate)| *score >= 0.6 && *candidate != name)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_value_set_gets_the_nearest_known_one() {
        let known = ["lab-magnesium", "lab-potassium", "magnesium-products"];
        assert_eq!(
            nearest("lab-magnesum", known).as_deref(),
            Some("lab-magnesium")
        );
        assert_eq!(nearest("ferritin-levels", known), None);
    }

    #[test]
    fn an_unknown_name_says_what_it_probably_meant() {
        let problem = Problem::Unknown {
            kind: NameKind::ValueSet,
            name: "lab-magnesum".into(),
            suggestion: Some("lab-magnesium".into()),
        };
        assert_eq!(
            problem.to_string(),
            "unknown value set 'lab-magnesum'; did you mean 'lab-magnesium'?"
        );
    }

    #[test]
    fn a_key_path_is_found_on_its_line() {
        let text = "id = \"r\"\n\n[when]\nall = [\n  { hook = [\"a\"] },\n  { lab = { analyte = \"mg\" } },\n]\n";
        let document = DeTable::parse(text).unwrap();
        let span = span_of_path(document.get_ref(), "when.all[1].lab.analyte").unwrap();
        assert_eq!(line_of_offset(text, span.start), 6);
        let span = span_of_path(document.get_ref(), "when.all[0]").unwrap();
        assert_eq!(line_of_offset(text, span.start), 5);
        let missing = span_of_path(document.get_ref(), "when.none").unwrap();
        assert_eq!(line_of_offset(text, missing.start), 3);
    }
}

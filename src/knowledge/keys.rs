//! The keys the loader accepts, in one place: each table of a knowledge file is a
//! [`Schema`] whose keys are read from the serde form that reads it (so the list cannot drift
//! from what is parsed), and whose nesting says which key holds which table. The same
//! schemas check a parsed file for unknown keys (with the nearest known key as a hint) and
//! list every key for `docs/rule-language.md`. Not for checking values (see `rule`,
//! `criteria`).

use std::fmt;

use serde::de::{Deserialize, Deserializer, Visitor};
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Problem, join, nearest};

/// One kind of table of a knowledge file.
#[derive(Clone, Copy)]
pub struct Schema {
    /// What the table is, for people, with its article (e.g. `a lab criterion`).
    pub name: &'static str,
    /// The keys it accepts.
    pub keys: fn() -> &'static [&'static str],
    /// What the value of each key holds.
    pub child: fn(&str) -> Shape,
}

/// What a key's value holds.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A plain value, or a table whose keys are not fixed (units, FHIR resources).
    Value,
    /// A table of this schema.
    Table(Schema),
    /// An array of tables of this schema.
    Tables(Schema),
}

/// No nested tables.
pub fn leaves(_: &str) -> Shape {
    Shape::Value
}

/// The field names of a struct read with `#[derive(Deserialize)]`, as the file spells them.
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Keys that were part of the language once, and what to write instead.
const RETIRED: &[(&str, &str)] = &[(
    "wins_over",
    "state precedence once, as yields_to on the rule that stays quiet",
)];

/// Checks every key of `table` (at `path`) and of the tables under it against `schema`.
pub fn check_keys(table: &DeTable<'_>, schema: Schema, path: &str) -> Result<(), Diagnostic> {
    let keys = (schema.keys)();
    for (key, value) in table {
        let key = key.get_ref().as_ref();
        let here = join(path, key);
        if !keys.contains(&key) {
            let problem = match RETIRED.iter().find(|(k, _)| *k == key) {
                Some((_, instead)) => Problem::Retired {
                    key: key.to_owned(),
                    instead,
                },
                None => Problem::UnknownKey {
                    key: key.to_owned(),
                    table: schema.name,
                    suggestion: nearest(key, keys.iter().copied()),
                },
            };
            return Err(Diagnostic::at(here, problem));
        }
        match ((schema.child)(key), value.get_ref()) {
            (Shape::Table(inner), DeValue::Table(t)) => check_keys(t, inner, &here)?,
            (Shape::Tables(inner), DeValue::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        check_keys(t, inner, &format!("{here}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every (table, key) the loader accepts, from the roots down, each table once.
pub fn every_key(roots: &[Schema]) -> Vec<(&'static str, &'static str)> {
    let mut seen: Vec<&'static str> = Vec::new();
    let mut out = Vec::new();
    let mut stack: Vec<Schema> = roots.to_vec();
    while let Some(schema) = stack.pop() {
        if seen.contains(&schema.name) {
            continue;
        }
        seen.push(schema.name);
        for key in (schema.keys)() {
            out.push((schema.name, *key));
            match (schema.child)(key) {
                Shape::Table(inner) | Shape::Tables(inner) => stack.push(inner),
                Shape::Value => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Example {
        first: String,
        #[serde(rename = "type")]
        kind: String,
    }

    #[test]
    fn the_fields_of_a_struct_are_read_from_its_serde_form() {
        assert_eq!(fields_of::<Example>(), ["first", "type"]);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_path_and_the_nearest_known_key() {
        const EXAMPLE: Schema = Schema {
            name: "an example",
            keys: fields_of::<Example>,
            child: leaves,
        };
        let document = DeTable::parse("first = \"a\"\ntipe = \"b\"\n").unwrap();
        let error = check_keys(document.get_ref(), EXAMPLE, "top").unwrap_err();
        assert_eq!(
            error.to_string(),
            "top.tipe: unknown key 'tipe' in an example; did you mean 'type'?"
        );
    }
}

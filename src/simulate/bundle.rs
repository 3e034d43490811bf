//! What a `.json` input file holds, read without building it whole: a CDS Hooks request, a
//! Bundle (its entries kept as slices of the file's text, each resource built only when it is
//! filed) or a single resource. References to other entries by their `fullUrl` (as in a
//! transaction Bundle: Synthea writes `urn:uuid:` ones) become `Type/id` references, as the
//! server that took the transaction would have stored them and as an EHR would send them.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use super::resource_head::{ResourceHead, read_head};

/// What a `.json` input file holds.
pub enum JsonFile<'a> {
    /// Not a JSON object.
    NotJson,
    /// A CDS Hooks request (it has `hook`).
    Request,
    /// A Bundle's entries.
    Bundle(BundleEntries<'a>),
    /// Any other resource: the whole text.
    Resource(&'a str),
}

/// The top-level fields that tell the kinds apart; the rest of the file is skipped.
#[derive(Deserialize)]
struct Probe<'a> {
    hook: Option<IgnoredAny>,
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<&'a RawValue>,
    #[serde(borrow)]
    entry: Option<&'a RawValue>,
}

/// One entry of a Bundle, its resource unparsed.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl", borrow)]
    full_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
}

/// Reads what the file `text` holds.
pub fn read_json_file(text: &str) -> JsonFile<'_> {
    if !text.trim_start().starts_with('{') {
        return JsonFile::NotJson;
    }
    let Ok(probe) = serde_json::from_str::<Probe>(text) else {
        return JsonFile::NotJson;
    };
    if probe.hook.is_some() {
        return JsonFile::Request;
    }
    match probe.resource_type.map(RawValue::get) {
        Some(r#""Bundle""#) => JsonFile::Bundle(BundleEntries::new(probe.entry)),
        _ => JsonFile::Resource(text),
    }
}

/// The entries of a Bundle, and the `Type/id` each `fullUrl` stands for.
pub struct BundleEntries<'a> {
    entries: Vec<Option<Entry<'a>>>,
    by_full_url: HashMap<Cow<'a, str>, String>,
}

impl<'a> BundleEntries<'a> {
    fn new(entry: Option<&'a RawValue>) -> BundleEntries<'a> {
        let entries: Vec<Option<Entry>> = entry
            .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|raw| serde_json::from_str::<Entry>(raw.get()).ok())
            .collect();
        let by_full_url = entries
            .iter()
            .flatten()
            .filter_map(|entry| {
                let head = read_head(entry.resource?.get()).ok()?;
                let reference = format!("{}/{}", head.resource_type, head.id?);
                Some((entry.full_url.clone()?, reference))
            })
            .collect();
        BundleEntries {
            entries,
            by_full_url,
        }
    }

    /// Calls `visit` with each entry in order: its resource's head and the resource as one line
    /// of JSON (references resolved), or why the entry has none. `wanted` says whether a
    /// resource of that head is kept; the JSON of one that is not is handed over as it is.
    pub fn for_each(
        &self,
        wanted: impl Fn(&ResourceHead) -> bool,
        mut visit: impl FnMut(usize, Result<(ResourceHead, Cow<'a, str>), &'static str>),
    ) {
        for (index, entry) in self.entries.iter().enumerate() {
            let resource = entry
                .as_ref()
                .ok_or("entry is not an object")
                .and_then(|entry| entry.resource.ok_or("entry without a resource"))
                .and_then(|raw| {
                    let head = read_head(raw.get()).map_err(|m| m.describe())?;
                    if !wanted(&head) {
                        return Ok((head, Cow::Borrowed(raw.get())));
                    }
                    // The patient may be named by a fullUrl: read the head again, resolved.
                    let json = self.one_line(raw);
                    let head = read_head(&json).map_err(|m| m.describe())?;
                    Ok((head, json))
                });
            visit(index, resource);
        }
    }

    /// The resource `raw` as one line with the references to other entries resolved.
    fn one_line(&self, raw: &'a RawValue) -> Cow<'a, str> {
        let text = raw.get();
        let one_line = !text.contains(['\n', '\r']);
        if one_line && self.by_full_url.is_empty() {
            return Cow::Borrowed(text);
        }
        let Ok(mut resource) = serde_json::from_str::<Value>(text) else {
            return Cow::Borrowed(text);
        };
        resolve_references(&mut resource, &self.by_full_url);
        Cow::Owned(resource.to_string())
    }
}

/// Replaces every `reference` in `value` that is the `fullUrl` of an entry by that entry's
/// `Type/id`.
fn resolve_references(value: &mut Value, by_full_url: &HashMap<Cow<str>, String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match field {
                    Value::String(reference) if key == "reference" => {
                        if let Some(resolved) = by_full_url.get(reference.as_str()) {
                            *reference = resolved.clone();
                        }
                    }
                    _ => resolve_references(field, by_full_url),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_references(item, by_full_url);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries of the Bundle `text`, every one wanted.
    fn entries(text: &str) -> Vec<Result<Value, &'static str>> {
        let JsonFile::Bundle(bundle) = read_json_file(text) else {
            panic!("not read as a Bundle: {text}");
        };
        let mut out = Vec::new();
        bundle.for_each(
            |_| true,
            |index, resource| {
                assert_eq!(index, out.len());
                out.push(resource.map(|(_, json)| {
                    assert!(!json.contains('\n'), "not one line: {json}");
                    serde_json::from_str(&json).unwrap()
                }));
            },
        );
        out
    }

    #[test]
    fn references_to_entries_by_full_url_become_type_and_id() {
        let bundle = r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:aa11", "resource": {"resourceType": "Patient", "id": "aa11"}},
            {"fullUrl": "urn:uuid:bb22", "resource": {"resourceType": "Observation", "id": "bb22",
                "subject": {"reference": "urn:uuid:aa11"},
                "hasMember": [{"reference": "urn:uuid:cc33"}, {"reference": "urn:uuid:unknown"}]}},
            {"fullUrl": "urn:uuid:cc33", "resource": {"resourceType": "Observation", "id": "o-3",
                "subject": {"reference": "Patient/aa11"}}},
            {"request": {"method": "DELETE", "url": "Observation/x"}},
            "not an entry",
            {"resource": {"id": "no-type"}}
        ]}"#;
        let JsonFile::Bundle(entries_of_bundle) = read_json_file(bundle) else {
            panic!("not a Bundle");
        };
        let mut patients = Vec::new();
        entries_of_bundle.for_each(
            |_| true,
            |_, resource| patients.push(resource.ok().and_then(|(head, _)| head.patient_id)),
        );
        assert_eq!(
            patients[..3],
            [Some("aa11"), Some("aa11"), Some("aa11")].map(|p| p.map(String::from))
        );
        let resources = entries(bundle);
        assert_eq!(resources.len(), 6);
        let observation = resources[1].as_ref().unwrap();
        assert_eq!(observation["subject"]["reference"], "Patient/aa11");
        assert_eq!(observation["hasMember"][0]["reference"], "Observation/o-3");
        assert_eq!(observation["hasMember"][1]["reference"], "urn:uuid:unknown");
        assert_eq!(resources[3], Err("entry without a resource"));
        assert_eq!(resources[4], Err("entry is not an object"));
        assert_eq!(resources[5], Err("no resourceType"));
    }

    #[test]
    fn a_pretty_printed_resource_is_filed_as_one_line_and_an_unwanted_one_as_it_is() {
        let bundle = "{\"resourceType\":\"Bundle\",\"entry\":[\n {\"resource\": {\n  \"resourceType\": \"Condition\",\n  \"id\": \"c1\"\n }},\n {\"resource\": {\n  \"resourceType\": \"Claim\"\n }}]}";
        assert_eq!(
            entries(bundle)[0].as_ref().unwrap()["id"],
            Value::from("c1")
        );
        let JsonFile::Bundle(bundle) = read_json_file(bundle) else {
            panic!("not a Bundle");
        };
        let mut kept = Vec::new();
        bundle.for_each(
            |head| head.resource_type != "Claim",
            |_, resource| kept.push(resource.unwrap().1.contains('\n')),
        );
        assert_eq!(kept, [false, true]);
    }

    #[test]
    fn requests_resources_and_other_text_are_told_apart() {
        assert!(matches!(
            read_json_file(r#"{"hook":"patient-view","context":{}}"#),
            JsonFile::Request
        ));
        assert!(matches!(
            read_json_file(r#"{"resourceType":"Patient","id":"p"}"#),
            JsonFile::Resource(_)
        ));
        assert!(matches!(
            read_json_file(r#"{"resourceType":"Bundle"}"#),
            JsonFile::Bundle(_)
        ));
        for text in ["[1, 2, 3]", "{not json", "", "42"] {
            assert!(matches!(read_json_file(text), JsonFile::NotJson), "{text}");
        }
    }
}

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

use super::resource_head::{Malformed, ResourceHead, is_plain_id, read_head};

/// What a `.json` input file holds.
pub enum JsonFile<'a> {
    /// Not a JSON object.
    NotJson,
    /// A CDS Hooks request (it has `hook`).
    Request,
    /// A Bundle's entries.
    Bundle(BundleEntries<'a>),
    /// A Bundle whose entries cannot be read, and why.
    UnreadableBundle(&'static str),
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

/// The two fields of a Bundle entry that matter here, unparsed.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "fullUrl", borrow)]
    full_url: Option<&'a RawValue>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
}

/// One Bundle entry.
struct Entry<'a> {
    /// The resource, unparsed.
    resource: Option<&'a RawValue>,
    /// The id the resource gets from its `urn:uuid:` fullUrl when it has none (as the server
    /// taking the transaction would give it one).
    assigned_id: Option<String>,
}

/// Why an entry gives no resource to file.
const NOT_AN_ENTRY: &str = "entry is not an object with one resource";

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
        Some(r#""Bundle""#) => match BundleEntries::new(probe.entry) {
            Some(entries) => JsonFile::Bundle(entries),
            None => JsonFile::UnreadableBundle("the Bundle's entry is not an array"),
        },
        _ => JsonFile::Resource(text),
    }
}

/// The entries of a Bundle, and the `Type/id` each `fullUrl` stands for.
pub struct BundleEntries<'a> {
    entries: Vec<Result<Entry<'a>, &'static str>>,
    by_full_url: HashMap<String, String>,
}

/// One entry's resource as [`BundleEntries::visit_entries`] hands it over: its head, and its
/// JSON on one line when it is wanted.
pub type VisitedEntry<'a> = Result<(ResourceHead, Option<Cow<'a, str>>), &'static str>;

impl<'a> BundleEntries<'a> {
    /// The entries of the Bundle field `entry` (none when absent); `None` when it is not an
    /// array.
    fn new(entry: Option<&'a RawValue>) -> Option<BundleEntries<'a>> {
        let raw_entries = match entry {
            Some(raw) => serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok()?,
            None => Vec::new(),
        };
        let mut by_full_url = HashMap::new();
        let entries = raw_entries
            .into_iter()
            .map(|raw| {
                let entry: RawEntry = serde_json::from_str(raw.get()).map_err(|_| NOT_AN_ENTRY)?;
                let full_url = entry
                    .full_url
                    .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
                let mut assigned_id = None;
                if let (Some(full_url), Some(resource)) = (full_url, entry.resource)
                    && let Ok(head) = read_head(resource.get())
                {
                    let had_id = head.id.is_some();
                    let id = head.id.or_else(|| {
                        let uuid = full_url.strip_prefix("urn:uuid:")?;
                        is_plain_id(uuid).then(|| uuid.to_owned())
                    });
                    if let Some(id) = id {
                        by_full_url.insert(full_url, format!("{}/{id}", head.resource_type));
                        if !had_id {
                            assigned_id = Some(id);
                        }
                    }
                }
                Ok(Entry {
                    resource: entry.resource,
                    assigned_id,
                })
            })
            .collect();
        Some(BundleEntries {
            entries,
            by_full_url,
        })
    }

    /// Calls `visit` with each entry in order: its resource's head and, when `wanted` says the
    /// resource of that head is kept, the resource as one line of JSON (references to other
    /// entries resolved); or why the entry has no resource.
    pub fn visit_entries(
        &self,
        wanted: impl Fn(&ResourceHead) -> bool,
        mut visit: impl FnMut(usize, VisitedEntry<'a>),
    ) {
        for (index, entry) in self.entries.iter().enumerate() {
            let resource = entry
                .as_ref()
                .map_err(|problem| *problem)
                .and_then(|entry| {
                    let raw = entry.resource.ok_or("entry without a resource")?;
                    let head = read_head(raw.get()).map_err(|m| m.describe())?;
                    if !wanted(&head) {
                        return Ok((head, None));
                    }
                    let json = self.on_one_line(entry, raw)?;
                    // The patient may be named by a fullUrl: read the head of the resolved JSON.
                    let head = match &json {
                        Cow::Borrowed(_) => head,
                        Cow::Owned(text) => read_head(text).map_err(|m| m.describe())?,
                    };
                    Ok((head, Some(json)))
                });
            visit(index, resource);
        }
    }

    /// The resource `raw` of `entry` as one line, with its assigned id and the references to
    /// other entries resolved.
    fn on_one_line(&self, entry: &Entry, raw: &'a RawValue) -> Result<Cow<'a, str>, &'static str> {
        let text = raw.get();
        if self.by_full_url.is_empty() && entry.assigned_id.is_none() {
            // In JSON (this text parsed), a raw line break can only be whitespace.
            return Ok(if text.contains(['\n', '\r']) {
                Cow::Owned(text.replace(['\n', '\r'], " "))
            } else {
                Cow::Borrowed(text)
            });
        }
        let mut resource: Value =
            serde_json::from_str(text).map_err(|_| Malformed::NotJson.describe())?;
        if let (Some(id), Some(fields)) = (&entry.assigned_id, resource.as_object_mut()) {
            fields.insert("id".to_owned(), Value::from(id.as_str()));
        }
        resolve_references(&mut resource, &self.by_full_url);
        Ok(Cow::Owned(resource.to_string()))
    }
}

/// Replaces every `reference` in `value` that is the `fullUrl` of an entry by that entry's
/// `Type/id`.
fn resolve_references(value: &mut Value, by_full_url: &HashMap<String, String>) {
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

    /// The entries of the Bundle `text`, every one wanted: each resource's patient and JSON.
    fn entries(text: &str) -> Vec<Result<(Option<String>, Value), &'static str>> {
        let JsonFile::Bundle(bundle) = read_json_file(text) else {
            panic!("not read as a Bundle: {text}");
        };
        let mut out = Vec::new();
        bundle.visit_entries(
            |_| true,
            |index, resource| {
                assert_eq!(index, out.len());
                out.push(resource.map(|(head, json)| {
                    let json = json.expect("a wanted resource has its JSON");
                    assert!(!json.contains(['\n', '\r']), "not one line: {json}");
                    (head.patient_id, serde_json::from_str(&json).unwrap())
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
            {"resource": {"id": "no-type"}},
            {"fullUrl": "urn:uuid:dd44", "resource": {"resourceType": "Condition"}, "fullUrl": "x"}
        ]}"#;
        let resources = entries(bundle);
        assert_eq!(resources.len(), 7);
        for resource in &resources[..3] {
            assert_eq!(resource.as_ref().unwrap().0.as_deref(), Some("aa11"));
        }
        let observation = &resources[1].as_ref().unwrap().1;
        assert_eq!(observation["subject"]["reference"], "Patient/aa11");
        assert_eq!(observation["hasMember"][0]["reference"], "Observation/o-3");
        assert_eq!(observation["hasMember"][1]["reference"], "urn:uuid:unknown");
        assert_eq!(resources[3], Err("entry without a resource"));
        assert_eq!(resources[4], Err(NOT_AN_ENTRY));
        assert_eq!(resources[5], Err("no resourceType"));
        assert_eq!(resources[6], Err(NOT_AN_ENTRY), "a duplicated fullUrl");
    }

    #[test]
    fn a_resource_without_an_id_gets_the_uuid_of_its_full_url() {
        let bundle = r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:5e1f", "resource": {"resourceType": "Patient"}},
            {"fullUrl": "urn:uuid:77ab", "resource": {"resourceType": "Condition",
                "subject": {"reference": "urn:uuid:5e1f"}}}
        ]}"#;
        let resources = entries(bundle);
        let (patient, resource) = resources[0].as_ref().unwrap();
        assert_eq!(
            (patient.as_deref(), &resource["id"]),
            (Some("5e1f"), &Value::from("5e1f"))
        );
        let (patient, condition) = resources[1].as_ref().unwrap();
        assert_eq!(patient.as_deref(), Some("5e1f"));
        assert_eq!(condition["subject"]["reference"], "Patient/5e1f");
        assert_eq!(condition["id"], "77ab");
    }

    #[test]
    fn a_pretty_printed_resource_is_filed_as_one_line_and_an_unwanted_one_not_at_all() {
        let bundle = "{\"resourceType\":\"Bundle\",\"entry\":[\n {\"resource\": {\n  \"resourceType\": \"Condition\",\n  \"id\": \"c1\"\n }},\r\n {\"resource\": {\r\n  \"resourceType\": \"Claim\"\n }}]}";
        assert_eq!(entries(bundle)[0].as_ref().unwrap().1["id"], "c1");
        let JsonFile::Bundle(bundle) = read_json_file(bundle) else {
            panic!("not a Bundle");
        };
        let mut kept = Vec::new();
        bundle.visit_entries(
            |head| head.resource_type != "Claim",
            |_, resource| kept.push(resource.unwrap().1.is_some()),
        );
        assert_eq!(kept, [true, false]);
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
        assert!(matches!(
            read_json_file(r#"{"resourceType":"Bundle","entry":{"resource":{}}}"#),
            JsonFile::UnreadableBundle(_)
        ));
        for text in ["[1, 2, 3]", "{not json", "", "42"] {
            assert!(matches!(read_json_file(text), JsonFile::NotJson), "{text}");
        }
    }
}

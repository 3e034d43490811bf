//! The resources of a Bundle file. References to other entries by their `fullUrl` (as in a
//! transaction Bundle: Synthea writes `urn:uuid:` ones) become `Type/id` references, as the
//! server that took the transaction would have stored them and as an EHR would send them.

use std::collections::HashMap;

use serde_json::Value;

/// The entries of `bundle`, in order: each resource as JSON, or why the entry has none.
pub fn bundle_resources(bundle: &Value) -> Vec<Result<String, &'static str>> {
    let entries = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let by_full_url: HashMap<&str, String> = entries
        .iter()
        .filter_map(|entry| {
            let full_url = entry["fullUrl"].as_str()?;
            let resource = &entry["resource"];
            let reference = format!(
                "{}/{}",
                resource["resourceType"].as_str()?,
                resource["id"].as_str()?
            );
            Some((full_url, reference))
        })
        .collect();
    entries
        .iter()
        .map(|entry| match entry.get("resource") {
            Some(resource) if resource.is_object() => {
                if by_full_url.is_empty() {
                    Ok(resource.to_string())
                } else {
                    let mut resource = resource.clone();
                    resolve_references(&mut resource, &by_full_url);
                    Ok(resource.to_string())
                }
            }
            _ => Err("entry without a resource"),
        })
        .collect()
}

/// Replaces every `reference` in `value` that is the `fullUrl` of an entry by that entry's
/// `Type/id`.
fn resolve_references(value: &mut Value, by_full_url: &HashMap<&str, String>) {
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
    use serde_json::json;

    #[test]
    fn references_to_entries_by_full_url_become_type_and_id() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:aa11", "resource": {"resourceType": "Patient", "id": "aa11"}},
            {"fullUrl": "urn:uuid:bb22", "resource": {"resourceType": "Observation", "id": "bb22",
                "subject": {"reference": "urn:uuid:aa11"},
                "hasMember": [{"reference": "urn:uuid:cc33"}, {"reference": "urn:uuid:unknown"}]}},
            {"fullUrl": "urn:uuid:cc33", "resource": {"resourceType": "Observation", "id": "o-3",
                "subject": {"reference": "Patient/aa11"}}},
            {"request": {"method": "DELETE", "url": "Observation/x"}}
        ]});
        let resources = bundle_resources(&bundle);
        assert_eq!(resources.len(), 4);
        let observation: Value = serde_json::from_str(resources[1].as_ref().unwrap()).unwrap();
        assert_eq!(observation["subject"]["reference"], "Patient/aa11");
        assert_eq!(observation["hasMember"][0]["reference"], "Observation/o-3");
        assert_eq!(observation["hasMember"][1]["reference"], "urn:uuid:unknown");
        assert_eq!(resources[3], Err("entry without a resource"));
    }
}

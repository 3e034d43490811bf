//! One patient's resources as the `patient-view` request an EHR would send: every prefetch
//! key of the service filled (a read with the resource, a search with a searchset Bundle),
//! and the Medication resources the patient's medications reference in a `medications` Bundle.

use std::collections::HashMap;

use super::spill::PatientGroup;
use crate::knowledge::services::Service;

/// The hookInstance of every simulated request (nothing is recorded, so one is enough).
const HOOK_INSTANCE: &str = "5f1c6a52-8d33-4c8e-9f0e-3d5b3a0c51a7";

/// Builds the `patient-view` request for `group` with the prefetch keys of `service`.
pub fn patient_view_request(
    service: &Service,
    group: &PatientGroup,
    medications: &HashMap<String, String>,
) -> Vec<u8> {
    let mut prefetch = String::with_capacity(
        group
            .resources
            .iter()
            .map(|(_, r)| r.len() + 16)
            .sum::<usize>()
            + 1024,
    );
    prefetch.push('{');
    let mut first = true;
    let mut key_separator = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    for (key, template) in &service.templates {
        key_separator(&mut prefetch);
        push_json_string(&mut prefetch, key);
        prefetch.push(':');
        if template.is_search() {
            let entries: Vec<&str> = group
                .resources
                .iter()
                .filter(|(kind, _)| *kind == template.resource_type)
                .map(|(_, json)| json.as_str())
                .collect();
            push_searchset(&mut prefetch, &entries);
        } else if template.resource_type == "Patient" {
            prefetch.push_str(group.patient.as_deref().unwrap_or("null"));
        } else {
            prefetch.push_str("null");
        }
    }
    let referenced = referenced_medications(group, medications);
    if !referenced.is_empty() {
        key_separator(&mut prefetch);
        prefetch.push_str("\"medications\":");
        push_searchset(&mut prefetch, &referenced);
    }
    prefetch.push('}');
    let mut request = String::with_capacity(prefetch.len() + 256);
    request.push_str("{\"hook\":\"patient-view\",\"hookInstance\":\"");
    request.push_str(HOOK_INSTANCE);
    request.push_str("\",\"context\":{\"userId\":\"Practitioner/simulation\",\"patientId\":");
    push_json_string(&mut request, &group.patient_id);
    request.push_str("},\"prefetch\":");
    request.push_str(&prefetch);
    request.push('}');
    request.into_bytes()
}

/// The Medication resources (as JSON) that the group's resources reference, each once.
fn referenced_medications<'a>(
    group: &PatientGroup,
    medications: &'a HashMap<String, String>,
) -> Vec<&'a str> {
    if medications.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<(&str, &'a str)> = Vec::new();
    for (_, json) in &group.resources {
        let mut rest = json.as_str();
        while let Some(at) = rest.find("\"medicationReference\"") {
            rest = &rest[at + 21..];
            let Some(start) = rest.find("Medication/") else {
                break;
            };
            let id: String = rest[start + 11..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            if let Some((key, medication)) = medications.get_key_value(&id)
                && !found.iter().any(|(k, _)| k == key)
            {
                found.push((key.as_str(), medication.as_str()));
            }
        }
    }
    found.into_iter().map(|(_, m)| m).collect()
}

fn push_searchset(out: &mut String, entries: &[&str]) {
    out.push_str("{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":");
    out.push_str(&entries.len().to_string());
    out.push_str(",\"entry\":[");
    for (i, json) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":");
        out.push_str(json);
        out.push('}');
    }
    out.push_str("]}");
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned()));
}

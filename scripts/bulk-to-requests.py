#!/usr/bin/env python3
"""Turns a small FHIR Bulk Data export (plain NDJSON, as `cramp-cds synthesize` writes) into one
patient-view CDS Hooks request file per patient, the way `cramp-cds simulate` builds them, to
time one `cramp-cds evaluate` process per patient against `simulate` (see docs/simulate.md).
Holds the whole export in memory: for a few hundred patients only.

Usage: python3 scripts/bulk-to-requests.py EXPORT_DIR OUT_DIR [MAX_PATIENTS]
"""
import glob
import json
import os
import sys

KEYS = {
    "Condition": "conditions",
    "MedicationStatement": "medicationStatements",
    "MedicationRequest": "medicationRequests",
    "Observation": "observations",
}


def main():
    export, out = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    os.makedirs(out, exist_ok=True)
    patients, medications, resources = {}, [], {}
    for path in sorted(glob.glob(os.path.join(export, "*.ndjson"))):
        with open(path) as f:
            for line in f:
                resource = json.loads(line)
                kind = resource["resourceType"]
                if kind == "Patient":
                    if len(patients) < limit:
                        patients[resource["id"]] = resource
                elif kind == "Medication":
                    medications.append(resource)
                elif kind in KEYS:
                    patient = resource["subject"]["reference"].split("/")[-1]
                    resources.setdefault(patient, []).append(resource)
    for patient_id, patient in patients.items():
        prefetch = {"patient": patient}
        for kind, key in KEYS.items():
            entries = [r for r in resources.get(patient_id, []) if r["resourceType"] == kind]
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                             "entry": [{"resource": r} for r in entries]}
        prefetch["medications"] = {"resourceType": "Bundle", "type": "searchset",
                                   "total": len(medications),
                                   "entry": [{"resource": m} for m in medications]}
        request = {"hook": "patient-view", "hookInstance": "5f1c6a52-8d33-4c8e-9f0e-3d5b3a0c51a7",
                   "context": {"userId": "Practitioner/simulation", "patientId": patient_id},
                   "prefetch": prefetch}
        with open(os.path.join(out, f"{patient_id}.json"), "w") as f:
            json.dump(request, f)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes fixtures/bulk/: three fixture patients (from fixtures/requests/) as a small FHIR Bulk
Data export, their resources spread over several files (plain and gzipped) and out of order,
with two malformed lines and a resource without a patient, for tests/api/simulate.rs; and
fixtures/bulk-bundles/: one patient as a Bundle and one as a CDS Hooks request file.

Run from the repository root: python3 scripts/bulk-fixture.py
"""
import gzip
import json
import os
import shutil

PATIENTS = {
    "pat-a": "diuretic-low-magnesium-mmol.fire",
    "pat-b": "cirrhosis-cramps.fire",
    "pat-c": "diabetic-paresthesia-no-b12.fire",
}


def resources_of(name, patient):
    with open(f"fixtures/requests/{name}.json") as f:
        request = json.load(f)
    old = request["context"]["patientId"]
    text = json.dumps(request["prefetch"]).replace(f"Patient/{old}", f"Patient/{patient}")
    prefetch = json.loads(text)
    out = []
    for value in prefetch.values():
        if value.get("resourceType") == "Bundle":
            out.extend(e["resource"] for e in value.get("entry", []))
        else:
            value["id"] = patient
            out.append(value)
    return out


def line(resource):
    return json.dumps(resource, separators=(",", ":")) + "\n"


def main():
    shutil.rmtree("fixtures/bulk", ignore_errors=True)
    shutil.rmtree("fixtures/bulk-bundles", ignore_errors=True)
    os.makedirs("fixtures/bulk")
    os.makedirs("fixtures/bulk-bundles")
    by_patient = {p: resources_of(n, p) for p, n in PATIENTS.items()}
    files = {}

    def add(file, resource):
        files.setdefault(file, []).append(line(resource) if isinstance(resource, dict) else resource)

    for patient in ["pat-c", "pat-a", "pat-b"]:
        observations = 0
        for resource in reversed(by_patient[patient]):
            kind = resource["resourceType"]
            if kind == "Patient":
                add("Patient.001.ndjson" if patient == "pat-b" else "Patient.000.ndjson", resource)
            elif kind == "Observation":
                observations += 1
                add("Observation.000.ndjson" if observations % 2 else "Observation.001.ndjson.gz", resource)
            elif kind == "Condition":
                add("Condition.ndjson.gz", resource)
            else:
                add(f"{kind}.ndjson", resource)
        if patient == "pat-c":
            add("Patient.000.ndjson", "{this is not json\n")
    add("Observation.000.ndjson", '{"id":"no-type","status":"final"}\n')
    add("Condition.ndjson.gz", line({"resourceType": "Condition", "id": "orphan",
                                     "code": {"text": "no subject"}}))
    for file, lines in files.items():
        path = f"fixtures/bulk/{file}"
        data = "".join(lines).encode()
        if file.endswith(".gz"):
            with gzip.GzipFile(path, "wb", mtime=0) as f:
                f.write(data)
        else:
            with open(path, "wb") as f:
                f.write(data)

    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in by_patient["pat-a"]]}
    with open("fixtures/bulk-bundles/pat-a.json", "w") as f:
        json.dump(bundle, f, indent=1)
    shutil.copy(f"fixtures/requests/{PATIENTS['pat-c']}.json", "fixtures/bulk-bundles/pat-c-request.json")


if __name__ == "__main__":
    main()

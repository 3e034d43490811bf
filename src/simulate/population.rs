//! `cramp-cds synthesize`: a synthetic population written as a FHIR Bulk Data export
//! (`Patient.ndjson`, `Condition.ndjson`, …, or `*.ndjson.gz`), one patient at a time so
//! nothing is held in memory. Prevalences are realistic for an adult primary-care population (diuretics about
//! 20 %, type 2 diabetes 10 %, CKD 8 %, cirrhosis 1 %, neuropathy 3 %, cramps 5 %, children
//! 20 %), each patient has about 100 resources, laboratory values are spread around every
//! threshold the rules use, and codes come from the value sets in `cds-hooks/valuesets/`.
//! The same seed gives the same resources.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Duration, NaiveDate};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// The resource types written, one file each.
const FILES: [&str; 6] = [
    "Patient",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "Observation",
    "Medication",
];

/// A small deterministic generator (SplitMix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [low, high).
    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// An index below `n`.
    fn index(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Normal(mean, sd), by Box-Muller.
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// What the generator writes and from which seed.
#[derive(Debug, Clone)]
pub struct PopulationSpec {
    /// How many patients.
    pub patients: u64,
    /// The seed.
    pub seed: u64,
    /// The day the records end (laboratory results fall in the two years before it).
    pub as_of: NaiveDate,
    /// Write `*.ndjson.gz` (as many Bulk Data servers do) instead of `*.ndjson`.
    pub gzip: bool,
}

/// One output file, plain or gzipped (buffered before the compressor: serde_json writes in
/// small pieces).
enum Output {
    Plain(BufWriter<File>),
    Gzip(BufWriter<GzEncoder<File>>),
}

impl Output {
    fn create(path: &Path, gzip: bool) -> Result<Output, String> {
        let file =
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(if gzip {
            let encoder = GzEncoder::new(file, Compression::fast());
            Output::Gzip(BufWriter::with_capacity(1 << 16, encoder))
        } else {
            Output::Plain(BufWriter::with_capacity(1 << 16, file))
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Plain(out) => out,
            Output::Gzip(out) => out,
        }
    }

    /// Writes what is buffered (and the gzip trailer).
    fn finish(self) -> std::io::Result<()> {
        match self {
            Output::Plain(mut out) => out.flush(),
            Output::Gzip(out) => {
                out.into_inner()
                    .map_err(std::io::IntoInnerError::into_error)?
                    .finish()?;
                Ok(())
            }
        }
    }
}

/// How many resources of each type were written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Patients.
    pub patients: u64,
    /// All resources.
    pub resources: u64,
}

/// Writes the population `spec` describes as a Bulk Data export into `dir` (created if
/// missing).
pub fn write_population(spec: &PopulationSpec, dir: &Path) -> Result<Written, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (extension, other) = if spec.gzip {
        ("ndjson.gz", "ndjson")
    } else {
        ("ndjson", "ndjson.gz")
    };
    // An export of the other kind left in `dir` would be read as well.
    for kind in FILES {
        let stale = dir.join(format!("{kind}.{other}"));
        if stale.exists() {
            std::fs::remove_file(&stale)
                .map_err(|e| format!("cannot remove {}: {e}", stale.display()))?;
        }
    }
    let mut files = FILES
        .iter()
        .map(|kind| Output::create(&dir.join(format!("{kind}.{extension}")), spec.gzip))
        .collect::<Result<Vec<_>, _>>()?;
    let mut written = Written::default();
    for medication in shared_medications() {
        write_line(&mut files[5], &medication)?;
        written.resources += 1;
    }
    for index in 0..spec.patients {
        let mut random = Random(spec.seed ^ index.wrapping_mul(0xd134_2543_de82_ef95));
        for resource in patient_resources(index, spec.as_of, &mut random) {
            let file = FILES
                .iter()
                .position(|k| resource["resourceType"] == *k)
                .unwrap_or(4);
            write_line(&mut files[file], &resource)?;
            written.resources += 1;
        }
        written.patients += 1;
    }
    for file in files {
        file.finish().map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(written)
}

fn write_line(out: &mut Output, resource: &Value) -> Result<(), String> {
    let out = out.writer();
    serde_json::to_writer(&mut *out, resource).map_err(|e| format!("cannot write: {e}"))?;
    out.write_all(b"\n")
        .map_err(|e| format!("cannot write: {e}"))
}

/// Medication resources that some orders reference instead of carrying a code.
fn shared_medications() -> Vec<Value> {
    [
        ("med-furosemide-40", "4603", "furosemide"),
        ("med-baclofen-10", "1292", "baclofen"),
        ("med-gabapentin-300", "310431", "gabapentin 300 MG Oral Capsule"),
    ]
    .iter()
    .map(|(id, code, display)| {
        json!({"resourceType": "Medication", "id": id,
               "code": {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}})
    })
    .collect()
}

/// What a synthetic patient has.
struct Problems {
    diuretic: bool,
    diabetes: bool,
    ckd: bool,
    dialysis: bool,
    cirrhosis: bool,
    neuropathy: bool,
    cramps: bool,
    numbness: bool,
}

fn patient_resources(index: u64, as_of: NaiveDate, random: &mut Random) -> Vec<Value> {
    let id = format!("p{index:07}");
    let child = random.chance(0.20);
    let age_years = if child {
        random.range(1.0, 18.0)
    } else {
        random.range(18.0, 95.0)
    };
    let birth = as_of - Duration::days((age_years * 365.25) as i64);
    let elder = age_years >= 65.0;
    let adult = !child;
    let diabetes = adult && random.chance(if elder { 0.16 } else { 0.09 });
    let dialysis = adult && random.chance(0.004);
    let cirrhosis = adult && random.chance(0.012);
    // Cramps are common in cirrhosis and on dialysis (about half of these patients).
    let cramps_chance = if cirrhosis || dialysis {
        0.45
    } else if elder {
        0.07
    } else {
        0.04
    };
    let problems = Problems {
        diuretic: adult && random.chance(if elder || cirrhosis { 0.32 } else { 0.18 }),
        diabetes,
        ckd: adult && random.chance(if elder { 0.14 } else { 0.06 }),
        dialysis,
        cirrhosis,
        neuropathy: adult && random.chance(if diabetes { 0.15 } else { 0.02 }),
        cramps: random.chance(cramps_chance),
        numbness: random.chance(0.03),
    };
    let mut resources = vec![json!({"resourceType": "Patient", "id": id,
        "gender": if random.chance(0.5) { "female" } else { "male" },
        "birthDate": birth.format("%Y-%m-%d").to_string()})];
    let subject = json!({"reference": format!("Patient/{id}")});
    let add_condition = |resources: &mut Vec<Value>,
                         random: &mut Random,
                         code: &str,
                         display: &str| {
        let onset = as_of - Duration::days(random.range(10.0, 3000.0) as i64);
        let n = resources.len();
        resources.push(json!({"resourceType": "Condition", "id": format!("{id}-c{n}"), "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
            "onsetDateTime": onset.format("%Y-%m-%d").to_string()}));
    };
    let fillers = [
        ("38341003", "Hypertensive disorder"),
        ("195967001", "Asthma"),
        ("55822004", "Hyperlipidemia"),
        ("35489007", "Depressive disorder"),
        ("69896004", "Rheumatoid arthritis"),
    ];
    for _ in 0..1 + random.index(4) {
        let (code, display) = fillers[random.index(fillers.len())];
        add_condition(&mut resources, random, code, display);
    }
    if problems.diabetes {
        add_condition(
            &mut resources,
            random,
            "44054006",
            "Diabetes mellitus type 2",
        );
    }
    if problems.ckd {
        let stages = [
            ("433144002", "Chronic kidney disease stage 3"),
            ("431857002", "Chronic kidney disease stage 4"),
            ("709044004", "Chronic kidney disease"),
        ];
        let (code, display) = stages[random.index(stages.len())];
        add_condition(&mut resources, random, code, display);
    }
    if problems.dialysis {
        add_condition(
            &mut resources,
            random,
            "46177005",
            "End-stage renal disease",
        );
    }
    if problems.cirrhosis {
        add_condition(&mut resources, random, "19943007", "Cirrhosis of liver");
    }
    if problems.neuropathy {
        let (code, display) = if problems.diabetes {
            ("230572002", "Neuropathy due to diabetes mellitus")
        } else {
            ("42345000", "Polyneuropathy")
        };
        add_condition(&mut resources, random, code, display);
    }
    if problems.cramps {
        add_condition(&mut resources, random, "449918009", "Cramp in lower leg");
    }
    if problems.numbness {
        add_condition(&mut resources, random, "44077006", "Numbness");
    }
    add_medications(
        &id,
        &subject,
        &problems,
        elder,
        as_of,
        random,
        &mut resources,
    );
    let target = 95 + random.index(11);
    add_observations(
        &id,
        &subject,
        &problems,
        as_of,
        random,
        &mut resources,
        target,
    );
    resources
}

fn add_medications(
    id: &str,
    subject: &Value,
    problems: &Problems,
    elder: bool,
    as_of: NaiveDate,
    random: &mut Random,
    resources: &mut Vec<Value>,
) {
    let mut orders: Vec<(Value, bool, u32)> = Vec::new();
    let coded = |code: &str, display: &str| json!({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}});
    let referenced =
        |med: &str| json!({"medicationReference": {"reference": format!("Medication/{med}")}});
    if problems.diuretic {
        let choice = random.index(4);
        let medication = match choice {
            // Some references name a Medication the export lacks (a data issue to report).
            0 if random.chance(0.05) => referenced("med-furosemide-20"),
            0 => referenced("med-furosemide-40"),
            1 => coded("4603", "furosemide"),
            2 => coded("5487", "hydrochlorothiazide"),
            _ => coded("38413", "torsemide"),
        };
        orders.push((medication, random.chance(0.5), 1));
    }
    if problems.diabetes && random.chance(0.7) {
        orders.push((coded("6809", "metformin"), random.chance(0.5), 2));
    }
    if problems.diabetes && random.chance(0.2) {
        orders.push((coded("274783", "insulin glargine"), true, 1));
    }
    if problems.cramps && random.chance(0.06) {
        orders.push((coded("9071", "quinine"), true, 1));
    }
    if (problems.cirrhosis || problems.cramps) && random.chance(0.15) || random.chance(0.005) {
        let medication = if random.chance(0.5) {
            referenced("med-baclofen-10")
        } else {
            coded("1292", "baclofen")
        };
        orders.push((medication, true, 3));
    }
    if problems.neuropathy && random.chance(0.4) || random.chance(0.01) {
        let medication = if random.chance(0.5) {
            referenced("med-gabapentin-300")
        } else {
            coded("310431", "gabapentin 300 MG Oral Capsule")
        };
        orders.push((medication, true, 3));
    }
    if (elder || problems.cramps) && random.chance(0.08) {
        orders.push((coded("5640", "ibuprofen"), true, 3));
    }
    let fillers = [
        ("83367", "atorvastatin"),
        ("29046", "lisinopril"),
        ("17767", "amlodipine"),
        ("7646", "omeprazole"),
        ("10582", "levothyroxine"),
    ];
    for _ in 0..random.index(4) {
        let (code, display) = fillers[random.index(fillers.len())];
        orders.push((coded(code, display), random.chance(0.5), 1));
    }
    for (medication, as_request, per_day) in orders {
        let n = resources.len();
        let authored = as_of - Duration::days(random.range(5.0, 700.0) as i64);
        let mut resource = if as_request {
            json!({"resourceType": "MedicationRequest", "id": format!("{id}-m{n}"), "status": "active", "intent": "order",
                   "subject": subject, "authoredOn": authored.format("%Y-%m-%d").to_string(),
                   "dosageInstruction": [{"text": format!("1 tablet {per_day} times daily"),
                       "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                       "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": UCUM, "code": "{tbl}"}}]}]})
        } else {
            json!({"resourceType": "MedicationStatement", "id": format!("{id}-m{n}"), "status": "active",
                   "subject": subject, "effectiveDateTime": authored.format("%Y-%m-%d").to_string()})
        };
        if let (Some(target), Some(fields)) = (resource.as_object_mut(), medication.as_object()) {
            for (key, value) in fields {
                target.insert(key.clone(), value.clone());
            }
        }
        resources.push(resource);
    }
}

/// A laboratory analyte the rules read: LOINC, display, unit, and a value for a patient.
fn analyte_value(name: &str, problems: &Problems, random: &mut Random) -> f64 {
    match name {
        // Threshold 0.70 mmol/L; diuretics and cirrhosis pull it down.
        "magnesium" => random.normal(
            if problems.diuretic || problems.cirrhosis {
                0.74
            } else {
                0.84
            },
            0.09,
        ),
        // Threshold 3.5 mmol/L.
        "potassium" => random.normal(if problems.diuretic { 3.8 } else { 4.2 }, 0.4),
        // Thresholds 60, 30 and 15.
        "egfr" => {
            if problems.dialysis {
                random.range(5.0, 14.0)
            } else if problems.ckd {
                random.range(10.0, 65.0)
            } else {
                random.normal(85.0, 18.0).max(20.0)
            }
        }
        // Threshold 50 ng/mL.
        "ferritin" => random.normal(110.0, 70.0).max(5.0),
        // Threshold 200 pg/mL.
        "vitamin-b12" => random.normal(420.0, 180.0).max(80.0),
        "hba1c" => random.normal(if problems.diabetes { 7.4 } else { 5.5 }, 0.8),
        _ => random.normal(100.0, 10.0),
    }
}

fn add_observations(
    id: &str,
    subject: &Value,
    problems: &Problems,
    as_of: NaiveDate,
    random: &mut Random,
    resources: &mut Vec<Value>,
    target: usize,
) {
    let analytes = [
        (
            "magnesium",
            "2601-3",
            "Magnesium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            0.55,
        ),
        (
            "potassium",
            "2823-3",
            "Potassium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            0.6,
        ),
        (
            "egfr",
            "98979-8",
            "GFR/1.73 sq M.predicted by Creatinine-based formula (CKD-EPI 2021)",
            "mL/min/{1.73_m2}",
            0.7,
        ),
        (
            "ferritin",
            "2276-4",
            "Ferritin [Mass/volume] in Serum or Plasma",
            "ng/mL",
            0.2,
        ),
        (
            "vitamin-b12",
            "2132-9",
            "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma",
            "pg/mL",
            0.15,
        ),
        (
            "hba1c",
            "4548-4",
            "Hemoglobin A1c/Hemoglobin.total in Blood",
            "%",
            0.3,
        ),
    ];
    let fillers = [
        (
            "2951-2",
            "Sodium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            140.0,
            3.0,
        ),
        (
            "2345-7",
            "Glucose [Mass/volume] in Serum or Plasma",
            "mg/dL",
            100.0,
            20.0,
        ),
        (
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            "g/dL",
            13.5,
            1.5,
        ),
        (
            "2160-0",
            "Creatinine [Mass/volume] in Serum or Plasma",
            "mg/dL",
            1.0,
            0.3,
        ),
        (
            "6690-2",
            "Leukocytes [#/volume] in Blood by Automated count",
            "10*3/uL",
            7.0,
            2.0,
        ),
        (
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            "mg/dL",
            190.0,
            35.0,
        ),
    ];
    let observation = |resources: &mut Vec<Value>,
                       random: &mut Random,
                       code: &str,
                       display: &str,
                       unit: &str,
                       value: f64| {
        let n = resources.len();
        let day = as_of - Duration::days(random.range(0.0, 730.0) as i64);
        resources.push(json!({"resourceType": "Observation", "id": format!("{id}-o{n}"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": subject,
            "effectiveDateTime": format!("{}T08:00:00Z", day.format("%Y-%m-%d")),
            "valueQuantity": {"value": (value * 100.0).round() / 100.0, "unit": unit, "system": UCUM, "code": unit}}));
    };
    for (name, code, display, unit, tested) in analytes {
        let tested = tested
            + if problems.diuretic || problems.ckd {
                0.3
            } else {
                0.0
            };
        if !random.chance(tested) {
            continue;
        }
        for _ in 0..1 + random.index(3) {
            let value = analyte_value(name, problems, random);
            // About 1 % of results come in a unit no analyte accepts (a data issue to report).
            let unit = if random.chance(0.01) { "mg" } else { unit };
            observation(resources, random, code, display, unit, value);
        }
    }
    while resources.len() < target {
        let (code, display, unit, mean, sd) = fillers[random.index(fillers.len())];
        let value = random.normal(mean, sd);
        observation(resources, random, code, display, unit, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_patients_and_about_a_hundred_resources_each() {
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let a = patient_resources(7, as_of, &mut Random(42));
        let b = patient_resources(7, as_of, &mut Random(42));
        assert_eq!(a, b);
        assert!((90..=120).contains(&a.len()), "{}", a.len());
        assert_ne!(a, patient_resources(7, as_of, &mut Random(43)));
    }
}

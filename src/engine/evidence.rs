//! What a finding rests on, as typed values: the lab result and the limit that
//! decided, the condition and its status, the medication and how it matched,
//! the draft order and its dose, an absence, an age, and the results that could
//! not be used and why. The engine produces these and never formats them;
//! `cards::evidence` turns them into the card's Markdown and the command line
//! prints them from the same values.

use chrono::{DateTime, NaiveDate, Utc};

use crate::fhir::record::Measured;
use crate::knowledge::valueset::{NameKind, ProductKind};

/// One piece of evidence, with the label of the outermost named criterion it came through,
/// e.g. `["Kidney function"]` (a list, so a fact may also carry none).
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The label of the outermost named criterion around the fact, if any.
    pub labels: Vec<String>,
    /// The fact.
    pub fact: Fact,
}

impl From<Fact> for Evidence {
    fn from(fact: Fact) -> Self {
        Evidence {
            labels: Vec::new(),
            fact,
        }
    }
}

/// A fact about the patient that a criterion found.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A lab result that is present, or on the tested side of a limit (`decided_by`).
    LabResult {
        /// The result.
        result: LabReading,
        /// The limit or flags that decided; `None` when only presence was tested.
        decided_by: Option<Decision>,
    },
    /// A fall between an earlier result and the newest one.
    LabFall {
        /// The earlier, higher result.
        earlier: LabReading,
        /// The newest result.
        newest: LabReading,
        /// How much it fell.
        fall: Amount,
        /// Hours between the two.
        hours: f64,
    },
    /// No usable result of an analyte in a window.
    NoResult {
        /// The analyte's display name.
        analyte: String,
        /// The look-back window in days; `None` for ever.
        within_days: Option<i64>,
    },
    /// A result of the analyte that was not used, and why.
    UnusableResult(Unusable),
    /// An active condition.
    Condition(ConditionFact),
    /// A current or past medication.
    Medication(MedicationFact),
    /// The different drugs counted by a `min_distinct` criterion.
    DistinctDrugs(Vec<String>),
    /// A draft order the criterion matched.
    DraftOrder(OrderFact),
    /// The patient's age at evaluation time.
    Age {
        /// Whole years.
        years: u32,
        /// `Patient.birthDate`.
        born: Option<NaiveDate>,
    },
    /// What was looked for and not found (a `not` criterion held).
    Absent {
        /// The criterion that did not match, described.
        description: String,
    },
}

/// A quantity in an analyte's canonical unit, shown with the analyte's decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct Amount {
    /// The value in the canonical unit.
    pub value: f64,
    /// The canonical unit as people read it.
    pub unit: String,
    /// Decimals to show.
    pub decimals: usize,
}

/// One laboratory result as it was reported and as it was compared.
#[derive(Debug, Clone, PartialEq)]
pub struct LabReading {
    /// The analyte's id in analytes.toml ("magnesium").
    pub analyte_id: String,
    /// The analyte's display name ("Serum magnesium").
    pub analyte: String,
    /// `Observation/{id}`.
    pub reference: String,
    /// Its LOINC codes.
    pub loinc: Vec<String>,
    /// Effective (or issued) time.
    pub time: DateTime<Utc>,
    /// The value as sent: number, unit and comparator.
    pub reported: Option<Measured>,
    /// The value in the analyte's canonical unit.
    pub canonical: Amount,
    /// Whether it was reported in the canonical unit.
    pub in_canonical_unit: bool,
    /// Whether the laboratory marked it preliminary.
    pub preliminary: bool,
}

impl LabReading {
    /// The comparator sent with the value ("<", ">=", ...), if any.
    pub fn comparator(&self) -> Option<&str> {
        self.reported.as_ref().and_then(|r| r.comparator.as_deref())
    }
}

/// Which way a limit was tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Below the limit.
    Below,
    /// Above the limit.
    Above,
}

impl Direction {
    /// "below" or "above".
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Below => "below",
            Direction::Above => "above",
        }
    }
}

/// What decided that a result is on the tested side.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The rule's threshold.
    Threshold {
        /// Below or above.
        direction: Direction,
        /// The threshold.
        limit: Amount,
    },
    /// The laboratory's own reference limit (`referenceRange.low/high`).
    LabLimit {
        /// Below or above.
        direction: Direction,
        /// The limit, in the canonical unit.
        limit: Amount,
    },
    /// The laboratory's interpretation flags (L, LL, H, HH, N).
    Flags(Vec<String>),
}

/// A result that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Unusable {
    /// The analyte's display name.
    pub analyte: String,
    /// `Observation/{id}`.
    pub reference: String,
    /// Why.
    pub reason: UnusableReason,
}

/// Why a result could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum UnusableReason {
    /// The resource could not be read (the reader's words).
    Unreadable(String),
    /// No effective or issued time.
    NoTime,
    /// No valueQuantity.
    NoValue,
    /// A unit that does not convert to the analyte's.
    Unit {
        /// The value as sent.
        value: f64,
        /// The unit as sent.
        unit: String,
        /// The analyte's unit as people read it.
        wanted: String,
    },
    /// A bound ("<4.0") that may be on either side of the limit.
    Inconclusive {
        /// The result.
        result: LabReading,
        /// The limit it was compared with.
        decision: Decision,
    },
    /// A bound cannot measure a fall.
    BoundForFall {
        /// The result.
        result: LabReading,
    },
}

/// How a code or a name matched a value set.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchedBy {
    /// The code itself is in the value set.
    Code {
        /// Code system URI.
        system: String,
        /// The code.
        code: String,
        /// The display sent or, when none was, the value set's.
        display: Option<String>,
    },
    /// The code is under a class of the value set (ATC, ICD-10-CM).
    Class {
        /// Code system URI.
        system: String,
        /// The code.
        code: String,
        /// The class code.
        class: String,
    },
    /// A product-level RxNorm code of the value set's expansion.
    Product {
        /// Code system URI.
        system: String,
        /// The code.
        code: String,
        /// The display sent or the value set's.
        display: Option<String>,
        /// The kind of product.
        kind: ProductKind,
        /// Its ingredients.
        ingredients: Vec<String>,
    },
    /// A name of the drug as a whole word in a display or text.
    Name {
        /// The kind of name.
        kind: NameKind,
        /// The name as the value set writes it.
        written: String,
        /// The ingredient it stands for, when that is not the name itself.
        ingredient: Option<String>,
        /// Where it was found ("RxNorm 1234 display", "text", "ingredient text").
        place: String,
        /// The text it was found in.
        text: String,
    },
}

/// A match, and whether it was through one of the medication's ingredients.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// How.
    pub by: MatchedBy,
    /// Whether an ingredient (not the product itself) matched.
    pub through_ingredient: bool,
}

/// A condition that counted.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionFact {
    /// Its name (display or text).
    pub name: String,
    /// `Condition/{id}`.
    pub reference: String,
    /// How its code matched.
    pub matched: Matched,
    /// `clinicalStatus`, if sent.
    pub clinical_status: Option<String>,
    /// `verificationStatus`, when it is tentative (provisional, differential, unconfirmed).
    pub tentative_status: Option<String>,
    /// Onset.
    pub onset: Option<DateTime<Utc>>,
    /// The body site, when the criterion tests one.
    pub site: Option<BodySite>,
}

/// The body site of a condition, for a criterion that tests one.
#[derive(Debug, Clone, PartialEq)]
pub enum BodySite {
    /// A site in the criterion's value set.
    Found(String),
    /// No site was stated, and the rule counts that.
    NotStated,
}

/// A medication that counted.
#[derive(Debug, Clone, PartialEq)]
pub struct MedicationFact {
    /// Whether it is active (else past, for `ever`).
    pub active: bool,
    /// Its name.
    pub name: String,
    /// The drug of the value set it is (the ingredient's name), when it matched a drug rather
    /// than a class.
    pub drug: Option<String>,
    /// `MedicationStatement/{id}` or `MedicationRequest/{id}`.
    pub reference: String,
    /// Its status.
    pub status: String,
    /// How it matched.
    pub matched: Matched,
}

/// A draft order that a criterion matched.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFact {
    /// Its name.
    pub name: String,
    /// The drug of the value set it is, when it matched a drug rather than a class.
    pub drug: Option<String>,
    /// `MedicationRequest/{id}` (or the other resource type).
    pub reference: String,
    /// How it matched.
    pub matched: Matched,
    /// What the criterion found about its dose.
    pub dose: DoseFact,
}

/// The dose of a draft order, as far as the criterion looked at it.
#[derive(Debug, Clone, PartialEq)]
pub enum DoseFact {
    /// Not looked at (the dose could not be computed and the criterion did not ask).
    NotShown,
    /// The total daily dose.
    Daily {
        /// Milligrams a day.
        mg_per_day: f64,
        /// How it was computed.
        working: String,
    },
    /// A total daily dose above the criterion's limit.
    Above {
        /// Milligrams a day.
        mg_per_day: f64,
        /// How it was computed.
        working: String,
        /// The limit, mg a day.
        limit: f64,
    },
    /// The total daily dose could not be computed, and why.
    Unknown(String),
}

//! The CDS Hooks 2.0 words a card is built from: its `indicator`, the
//! `selectionBehavior` of its suggestions, and the `type` of a suggestion's
//! action. Rule files use the same words, so the knowledge reads them from here.

use serde::Deserialize;

/// CDS Hooks card indicator, ordered by urgency.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Indicator {
    /// Informational.
    Info,
    /// Worth the clinician's attention.
    Warning,
    /// Needs action now.
    Critical,
}

impl Indicator {
    /// The indicator on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::Info => "info",
            Indicator::Warning => "warning",
            Indicator::Critical => "critical",
        }
    }
}

/// CDS Hooks `selectionBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionBehavior {
    /// The clinician may accept at most one suggestion.
    AtMostOne,
    /// The clinician may accept any of them.
    Any,
}

/// The kind of a suggestion action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    /// Create a new resource.
    Create,
    /// Replace a draft order.
    Update,
    /// Remove a draft order.
    Delete,
}

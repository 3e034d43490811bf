//! The CDS Hooks response types (2.0 §4), serialised as the spec shapes them:
//! optional fields without a value are omitted, never `null`, and `cards` is
//! always present.

use serde::Serialize;

use crate::hooks::vocabulary::{ActionType, Indicator, SelectionBehavior};

/// The body of a successful hook response.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CdsResponse {
    /// The cards; possibly empty, never absent.
    pub cards: Vec<Card>,
}

/// A card.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    /// Sent back in feedback.
    pub uuid: String,
    /// One sentence, under 140 characters.
    pub summary: String,
    /// GitHub-flavoured Markdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Urgency.
    pub indicator: Indicator,
    /// Where the advice comes from.
    pub source: Source,
    /// One-click actions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub suggestions: Vec<Suggestion>,
    /// Required whenever there are suggestions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection_behavior: Option<SelectionBehavior>,
    /// Reasons a clinician can give for overriding the card.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub override_reasons: Vec<Coding>,
    /// Links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub links: Vec<Link>,
    /// Extensions (CDS Hooks 2.0 §4.3.1): `org.cramp-cds.knowledge` names the version of the
    /// knowledge that made the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extension: Option<serde_json::Value>,
}

/// `card.source`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Source {
    /// The citation.
    pub label: String,
    /// An absolute URL to learn more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The rule that made the card (its id is the code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<Coding>,
}

/// A FHIR Coding as CDS Hooks uses it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Coding {
    /// Code system.
    pub system: String,
    /// Code.
    pub code: String,
    /// Display text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// A suggestion.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// What the clinician sees.
    pub label: String,
    /// Sent back in feedback when accepted.
    pub uuid: String,
    /// Whether it is the recommended choice.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub is_recommended: bool,
    /// Applied together.
    pub actions: Vec<Action>,
}

/// A suggestion action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// create, update or delete.
    #[serde(rename = "type")]
    pub action_type: ActionType,
    /// What it does.
    pub description: String,
    /// The FHIR resource (create and update).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resource: Option<serde_json::Value>,
    /// The relative reference of the resource (delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// A link.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Link {
    /// What the clinician sees.
    pub label: String,
    /// Absolute URL.
    pub url: String,
    /// `absolute` or `smart`.
    #[serde(rename = "type")]
    pub link_type: String,
}

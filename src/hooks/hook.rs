//! The hooks this service answers.

use std::fmt;
use std::str::FromStr;

/// A CDS Hooks hook (Hook Library 1.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `patient-view`: a chart is opened.
    PatientView,
    /// `order-select`: an order is being chosen.
    OrderSelect,
    /// `order-sign`: orders are about to be signed.
    OrderSign,
}

impl Hook {
    /// The hook's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::PatientView => "patient-view",
            Hook::OrderSelect => "order-select",
            Hook::OrderSign => "order-sign",
        }
    }

    /// Whether the context carries `draftOrders`.
    pub fn has_draft_orders(self) -> bool {
        matches!(self, Hook::OrderSelect | Hook::OrderSign)
    }

    /// Resource types allowed in `context.userId` for this hook.
    pub fn user_types(self) -> &'static [&'static str] {
        match self {
            Hook::PatientView => &[
                "Practitioner",
                "PractitionerRole",
                "Patient",
                "RelatedPerson",
            ],
            Hook::OrderSelect | Hook::OrderSign => &["Practitioner", "PractitionerRole"],
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "patient-view" => Ok(Hook::PatientView),
            "order-select" => Ok(Hook::OrderSelect),
            "order-sign" => Ok(Hook::OrderSign),
            other => Err(format!(
                "unknown hook '{other}' (patient-view, order-select or order-sign)"
            )),
        }
    }
}

//! The service the server answers with, replaceable while it runs: [`LiveService`] holds
//! the current [`CdsService`] behind an `ArcSwap`, so each request takes one snapshot at its
//! start and uses that knowledge to its end, while a reload (SIGHUP or
//! `POST /admin/knowledge/reload`) loads and validates the knowledge directory off the
//! request path and swaps the new service in only when it is sound. Not for loading or
//! validating knowledge (see `crate::knowledge`).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::invoke::CdsService;
use crate::knowledge::{Knowledge, KnowledgeError, KnowledgeSource, KnowledgeVersion};

/// The current service, and where its knowledge is reloaded from.
#[derive(Debug, Clone)]
pub struct LiveService {
    current: Arc<ArcSwap<CdsService>>,
    source: KnowledgeSource,
    /// One reload at a time, so that the last one to finish is the last one loaded.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new knowledge differs and now serves every new request.
    Replaced {
        /// The version that served until now.
        previous: KnowledgeVersion,
        /// The version that serves now.
        current: KnowledgeVersion,
    },
    /// The directory holds the knowledge already serving (same hash): nothing was swapped.
    Unchanged {
        /// The version serving.
        current: KnowledgeVersion,
    },
}

/// Why a reload was refused; the knowledge serving before keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The service runs on the built-in knowledge, which cannot change.
    #[error(
        "the service runs on the built-in knowledge, which cannot change while it runs; set knowledge.dir to reload from a directory"
    )]
    BuiltIn {
        /// The version serving.
        current: KnowledgeVersion,
    },
    /// The new knowledge does not load (the message names the file and the problem).
    #[error("{source}")]
    Invalid {
        /// Why.
        #[source]
        source: KnowledgeError,
        /// The version still serving.
        current: KnowledgeVersion,
    },
    /// The loading task failed (it panicked).
    #[error("the knowledge could not be loaded: {0}")]
    Failed(String),
}

impl ReloadError {
    /// The label of `cramp_cds_knowledge_reloads_total{outcome}` for this refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            ReloadError::BuiltIn { .. } => "built_in",
            ReloadError::Invalid { .. } | ReloadError::Failed(_) => "refused",
        }
    }
}

impl Reloaded {
    /// The label of `cramp_cds_knowledge_reloads_total{outcome}` for this reload.
    pub fn outcome(&self) -> &'static str {
        match self {
            Reloaded::Replaced { .. } => "reloaded",
            Reloaded::Unchanged { .. } => "unchanged",
        }
    }
}

impl LiveService {
    /// Serves `service`, reloading its knowledge from `source`.
    pub fn new(service: CdsService, source: KnowledgeSource) -> LiveService {
        LiveService {
            current: Arc::new(ArcSwap::from_pointee(service)),
            source,
            reloading: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The service serving now: a snapshot a request keeps from its start to its end.
    pub fn current(&self) -> Arc<CdsService> {
        self.current.load_full()
    }

    /// Loads and validates the knowledge again from its directory, and serves it from the
    /// next request on when it loads and differs from the current one. Requests in flight
    /// finish on the knowledge they started with. A broken knowledge is refused, naming the
    /// file and the problem, and the current one keeps serving. Every outcome is counted
    /// in `cramp_cds_knowledge_reloads_total{outcome}` and logged (a refusal at warn).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.reload_uncounted().await;
        let outcome = match &result {
            Ok(reloaded) => reloaded.outcome(),
            Err(refused) => refused.outcome(),
        };
        crate::metrics::METRICS
            .knowledge_reloads
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(Reloaded::Replaced { previous, current }) => tracing::info!(
                previous = %previous.id(),
                current = %current.id(),
                "knowledge reloaded"
            ),
            Ok(Reloaded::Unchanged { current }) => {
                tracing::info!(current = %current.id(), "knowledge reload: unchanged")
            }
            Err(refused) => tracing::warn!(
                reason = %refused,
                "knowledge reload refused; the knowledge loaded before keeps serving"
            ),
        }
        result
    }

    async fn reload_uncounted(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let serving = self.current();
        let previous = serving.knowledge.version.clone();
        if self.source == KnowledgeSource::BuiltIn {
            return Err(ReloadError::BuiltIn { current: previous });
        }
        let source = self.source.clone();
        // Reading and validating the files blocks: keep it off the request workers' threads.
        let loaded = actix_web::rt::task::spawn_blocking(move || Knowledge::load(&source))
            .await
            .map_err(|e| ReloadError::Failed(e.to_string()))?;
        let knowledge = loaded.map_err(|source| ReloadError::Invalid {
            source,
            current: previous.clone(),
        })?;
        if knowledge.version.full_hash == previous.full_hash {
            return Ok(Reloaded::Unchanged { current: previous });
        }
        let current = knowledge.version.clone();
        self.current
            .store(Arc::new(serving.with_knowledge(Arc::new(knowledge))));
        Ok(Reloaded::Replaced { previous, current })
    }
}

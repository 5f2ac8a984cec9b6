//! [`UnsampledContext`]: a trace this process does not record (not sampled, ignored, or the
//! backend is down) but still propagates, so that callees keep the caller's trace id.

use std::sync::{Arc, OnceLock};

use crate::agent::Agent;
use crate::id::new_id;
use crate::propagation::Sw8Header;
use crate::segment::Text;

pub(crate) struct UnsampledContext {
    pub(crate) agent: Arc<Agent>,
    /// The caller's trace id, or one made the first time the trace is propagated.
    pub(crate) trace_id: OnceLock<String>,
    pub(crate) endpoint: Text,
}

impl UnsampledContext {
    pub(crate) fn new(agent: Arc<Agent>, trace_id: Option<String>, endpoint: Text) -> Self {
        let cell = OnceLock::new();
        if let Some(id) = trace_id {
            let _ = cell.set(id);
        }
        UnsampledContext {
            agent,
            trace_id: cell,
            endpoint,
        }
    }

    /// The `sw8` header, with sample flag 0, for a call to `peer`: the callee may record the
    /// trace, under the same id.
    pub(crate) fn sw8(&self, peer: &str) -> Option<String> {
        if peer.is_empty() || self.endpoint.is_empty() {
            return None;
        }
        let header = Sw8Header {
            sampled: false,
            trace_id: self
                .trace_id
                .get_or_init(|| new_id().as_str().to_owned())
                .clone(),
            parent_segment_id: new_id().as_str().to_owned(),
            parent_span_id: 0,
            parent_service: self.agent.service.to_string(),
            parent_service_instance: self.agent.instance.to_string(),
            parent_endpoint: self.endpoint.to_string(),
            target_address: peer.to_owned(),
        };
        Some(header.encode())
    }
}

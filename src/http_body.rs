//! Reading the body of a response from a server outside the service (a FHIR
//! server, a key server) within a byte limit, counted as it arrives: a missing
//! or false `Content-Length` cannot lift the limit, and a larger declared one is
//! refused before anything is read. Not for request bodies (`server/`).

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError<E> {
    /// It is larger than the limit (as declared, or as counted).
    TooLarge,
    /// The connection failed while it was read.
    Read(reqwest::Error),
    /// `accept` refused a chunk.
    Refused(E),
}

/// Reads `response`'s body, at most `limit` bytes. `accept` is told each chunk's size before
/// it is kept, and may refuse it (for a budget several responses share).
pub async fn read_limited<E>(
    mut response: reqwest::Response,
    limit: usize,
    mut accept: impl FnMut(usize) -> Result<(), E>,
) -> Result<Vec<u8>, BodyError<E>> {
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let capacity = declared.map_or(8 * 1024, |length| length as usize);
    let mut body = Vec::with_capacity(capacity.min(limit));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        accept(chunk.len()).map_err(BodyError::Refused)?;
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

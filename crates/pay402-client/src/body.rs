//! Bounded reading of response bodies (402 offers, error answers).

use reqwest::Response;

/// Reads at most `max` bytes of the body; `true` when it was longer (the
/// rest is not read).
pub(crate) async fn read_bounded(
    mut response: Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            buf.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

//! Per-owner request rate limit: a fixed one-minute window counted in the repository,
//! so one owner's burst (a script, a runaway client) cannot take the whole API's
//! capacity from everyone else. API Gateway's own throttling is per route, not per
//! caller; Lambda's reserved concurrency bounds the total (template.yaml).

use crate::{
    domain::{Owner, UploadError},
    App,
};

/// Length of one counting window.
pub const WINDOW_SECS: i64 = 60;

/// Counts one request of `owner`; past the configured limit, answers when to retry.
pub async fn admit(app: &App, owner: &Owner, now: i64) -> Result<(), UploadError> {
    let limit = app.config.owner_requests_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let window = now - now.rem_euclid(WINDOW_SECS);
    if app.repo.count_request(owner, window, limit).await? {
        return Ok(());
    }
    tracing::warn!(owner = %owner, limit, "request rate limit reached");
    Err(UploadError::RateLimited { limit, retry_after_secs: (window + WINDOW_SECS - now).max(1) as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, Fakes};

    #[tokio::test]
    async fn an_owner_past_the_limit_waits_for_the_next_minute_and_others_do_not() {
        let mut cfg = config();
        cfg.owner_requests_per_minute = 3;
        let f = Fakes::with_config(cfg);
        let (a, b) = (Owner::parse("ada").unwrap(), Owner::parse("bob").unwrap());
        let t = 1_800_000_010; // 10 s into a minute
        for _ in 0..3 {
            admit(&f.app, &a, t).await.unwrap();
        }
        match admit(&f.app, &a, t + 5).await {
            Err(UploadError::RateLimited { limit: 3, retry_after_secs }) => assert_eq!(retry_after_secs, 45),
            other => panic!("{other:?}"),
        }
        admit(&f.app, &b, t + 5).await.unwrap();
        admit(&f.app, &a, t + 50).await.unwrap();
    }
}

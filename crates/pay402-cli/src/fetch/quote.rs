//! `pay402 fetch --quote`: the offers of a 402 and what would be paid.

use super::*;

/// What the payer would choose: (offer label, amount, cost).
type Chosen = Arc<Mutex<Option<(String, String, Option<String>)>>>;

/// `--quote`: one unpaid request for the offers, then the payer's choice,
/// declined, on an in-memory journal. Nothing is paid.
pub(super) async fn quote(args: &FetchArgs, req: &Req, b: PayerBuilder) -> Result<u8, Fail> {
    let chosen: Chosen = Arc::default();
    let slot = Arc::clone(&chosen);
    let payer = b
        .journal(Journal::memory())
        .choose(Choice::custom(move |c| {
            let best = c
                .iter()
                .enumerate()
                .min_by_key(|(i, c)| (c.cost.is_none(), c.cost.map(Amount::value), *i));
            if let (Some((_, c)), Ok(mut slot)) = (best, slot.lock()) {
                *slot = Some((
                    c.offer.label(),
                    c.offer.amount.to_string(),
                    c.cost.map(ToString::to_string),
                ));
            }
            None
        }))
        .build()
        .await
        .map_err(usage)?;
    let resp = req
        .builder(payer.http())
        .send()
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_bounded(resp, 64 * 1024).await?;
    let set = read_offers(&headers, &body);
    let mut offers = Vec::new();
    for o in &set.offers {
        offers.push(serde_json::json!({
            "rail": o.rail.to_string(),
            "offer": o.label(),
            "amount": o.amount.to_string(),
            "network": o.network,
            "pay_to": o.pay_to,
            "description": o.description,
        }));
    }
    let skipped: Vec<String> = set
        .skipped
        .iter()
        .map(|s| format!("{}: {} ({})", s.name, s.error, s.error.reason()))
        .collect();
    let (code, would, refusals) = if status.as_u16() == 402 || status.as_u16() == 401 {
        match payer.send(req.builder(payer.http())).await {
            Err(e) => {
                let refusals: Vec<String> = e
                    .refusals()
                    .iter()
                    .filter(|r| !matches!(r.reason, RefusalReason::Declined))
                    .map(|r| format!("{}: {}", r.offer, r.reason))
                    .collect();
                let would = chosen.lock().ok().and_then(|c| c.clone());
                let code = match (&would, e) {
                    (Some(_), _) => exit::OK,
                    (None, e) => refused(true, &e).0,
                };
                (code, would, refusals)
            }
            Ok(_) => (exit::OK, None, Vec::new()),
        }
    } else {
        (exit::OK, None, Vec::new())
    };
    if args.json {
        let v = serde_json::json!({
            "status": status.as_u16(),
            "offers": offers,
            "skipped": skipped,
            "would_pay": would.as_ref().map(|(offer, amount, cost)| serde_json::json!({
                "offer": offer, "amount": amount, "cost": cost,
            })),
            "refused": refusals,
        });
        println!("{v}");
    } else {
        println!("{status}: {} offer(s)", offers.len());
        for o in &offers {
            println!(
                "  {} {}{}",
                o["offer"].as_str().unwrap_or("-"),
                o["amount"].as_str().unwrap_or("-"),
                o["description"]
                    .as_str()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
        for s in &skipped {
            println!("  skipped: {s}");
        }
        for r in &refusals {
            println!("  refused {r}");
        }
        match &would {
            Some((offer, amount, cost)) => println!(
                "would pay {amount} with {offer}{}",
                cost.as_ref()
                    .map(|c| format!(" (costs {c})"))
                    .unwrap_or_default()
            ),
            None => println!("would pay nothing"),
        }
    }
    Ok(code)
}

/// Reads at most `limit` bytes of a body (a 402 larger than that is
/// truncated: its offers are read from the headers).
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Fail(exit::ERROR, e.to_string()))?
    {
        if out.len() + chunk.len() > limit {
            out.clear();
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

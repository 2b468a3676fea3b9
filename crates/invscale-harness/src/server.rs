//! A model served elsewhere: the server connected, its API found, its self-check run (the run
//! stops here if the server's numbers cannot be trusted), and the model's tokenizer read here.

use invscale_eval::ScoreCache;
use invscale_models::load::Described;
use invscale_servers::http::api_key_from_env;
use invscale_servers::{CheckReport, Server, ServerError, ServerScorer, self_check};
use serde_json::json;

pub use invscale_servers::{ApiKind, ServerOptions};

use crate::error::HarnessError;
use crate::info::{ModelInfo, display_name, token};

fn failed(e: ServerError) -> HarnessError {
    match e {
        ServerError::Refused(m) => HarnessError::BadInput(m),
        e => HarnessError::Server(e.to_string()),
    }
}

/// The server of `options`, checked, scoring with `reference`'s tokenizer (`described`).
pub(crate) fn connect(options: &ServerOptions, reference: &str, described: Described) -> Result<(ServerScorer, ModelInfo), HarnessError> {
    let server = Server::connect(options, api_key_from_env()).map_err(failed)?;
    let Described { tokenizer, arch, params, context_length, path } = described;
    let family = crate::info::infer_family(reference, &path, &arch);
    let info = ModelInfo {
        reference: reference.to_string(),
        name: display_name(reference),
        path,
        arch,
        params: params.total,
        non_embedding_params: params.non_embedding,
        dtype: "server",
        tokenizer: tokenizer.kind.clone(),
        bos_token: token(&tokenizer, tokenizer.bos_id),
        eos_token: token(&tokenizer, tokenizer.eos_id),
        family,
        context_length,
    };
    let mut scorer = ServerScorer::new(server, tokenizer, context_length, options.concurrency, ScoreCache::disabled());
    let report = if options.skip_check { CheckReport { skipped: true, lines: Vec::new() } } else { self_check(&scorer).map_err(failed)? };
    if !report.passed() {
        return Err(HarnessError::BadInput(format!(
            "{} ({} API, model {}) failed its self-check, so nothing was scored:\n{}\n(--skip-server-check scores anyway; the results then say so)",
            scorer.server.client.base,
            scorer.server.api.name(),
            scorer.server.model,
            report.failures()
        )));
    }
    scorer.check = report;
    Ok((scorer, info))
}

/// What the results record of the server: where (the address, no credentials), which API and
/// model, what it said of itself, the self-check, and how much was sent.
pub fn record(scorer: &ServerScorer) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    json!({
        "url": scorer.server.client.base,
        "api": scorer.server.api.name(),
        "served_model": scorer.server.model,
        "about": scorer.server.about,
        "self_check": scorer.check,
        "sequences_sent": scorer.sent.load(Ordering::Relaxed),
        "sequences_from_answer_cache": scorer.reused.load(Ordering::Relaxed),
        "is_greedy": if scorer.server.api == invscale_servers::ApiKind::Tgi { "not available (TGI's prefill has no top-1): false" } else { "from the server's top-1" },
    })
}

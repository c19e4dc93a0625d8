//! The admin API (`Authorization: Bearer <admin token>`): create, list, inspect, revoke and
//! rotate API keys, top up their credits and set their rate limits; audit balances against the
//! usage ledger and rebuild one from it. Every route is authenticated before anything else
//! (`auth::admin_only`); the document gives every operation tagged `admin` its security, 401
//! and 503 once (`docs::AdminOperations`). No answer but a create or a rotation ever holds a
//! secret, and those only the new one, once. Every grant (creation, top-up) is recorded in
//! the usage ledger.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;

use super::body::{self, Object};
use super::problems::{BadBody, KeyNotFound, TooLarge, WrongMediaType};
use super::state::AppState;
use crate::audit::{self, AuditReport, Rebuilt};
use crate::credits::{ApiKey, KeyId, KeyInfo, NewKey, RateLimit, MAX_GRACE_SECONDS};
use crate::error::{ApiError, Problem};

/// How long the audit and a rebuild wait for the ledger writer to catch up.
const LEDGER_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /admin/keys` body. Unknown fields are ignored, as they always were.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKey {
    /// 1 to 200 characters, not all white space; leading and trailing white space is
    /// dropped.
    #[schema(
        example = "acme",
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028-\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// Starting balance, at most 2^53 - 1; each query costs `SLUICE_GATEWAY_QUERY_COST`
    /// (default 1).
    #[serde(deserialize_with = "body::integer")]
    #[schema(example = 100, maximum = 9007199254740991_u64)]
    pub credits: u64,
    /// RFC 3339 instant after which the key is refused (401). Must be in the future.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; omitted: the gateway's default.
    #[serde(default, deserialize_with = "body::optional_object")]
    pub rate_limit: Option<RateLimitBody>,
}

/// A rate limit as sent: at most `requests` per `per_seconds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// 1 to 1000000.
    #[serde(deserialize_with = "body::integer")]
    #[schema(example = 10, minimum = 1, maximum = 1000000)]
    pub requests: u32,
    /// 1 to 86400.
    #[serde(deserialize_with = "body::integer")]
    #[schema(example = 1, minimum = 1, maximum = 86400)]
    pub per_seconds: u32,
}

impl RateLimitBody {
    fn parse(&self) -> Result<RateLimit, ApiError> {
        Ok(RateLimit::new(self.requests, self.per_seconds)?)
    }
}

/// A created key: the secret, shown in this answer only, and the key's description.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The secret to send as `X-API-Key`. Only its SHA-256 is stored.
    #[schema(example = "sk_sluice_…")]
    pub key: String,
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// Compatibility with the original design: `{"username", "credits"}` → `{"api_key"}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    /// The key's name: 1 to 200 characters, not all white space; leading and trailing white
    /// space is dropped.
    #[schema(
        example = "acme",
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028-\u2029\u202F\u205F\u3000]"
    )]
    pub username: String,
    /// Starting balance, at most 2^53 - 1.
    #[serde(deserialize_with = "body::integer")]
    #[schema(example = 100, maximum = 9007199254740991_u64)]
    pub credits: u64,
}

/// `POST /create_user` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    /// The secret to send as `X-API-Key`, shown in this answer only.
    pub api_key: String,
    pub username: String,
    pub credits: u64,
}

/// `GET /admin/keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, oldest first, revoked ones included.
    pub keys: Vec<KeyInfo>,
}

/// `POST /admin/keys/{id}/rotate` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Seconds the old secret keeps working (0: none; at most 2592000). Omitted or null:
    /// `SLUICE_GATEWAY_ROTATION_GRACE_SECONDS` (default 3600).
    #[serde(default, deserialize_with = "body::optional_integer")]
    #[schema(example = 3600, maximum = 2592000)]
    pub grace_seconds: Option<u32>,
}

/// `POST /admin/keys/{id}/rotate` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// The new secret, shown in this answer only.
    #[schema(example = "sk_sluice_…")]
    pub key: String,
    pub id: String,
    /// When the previous secret stops working. Both draw from the same balance until then.
    pub previous_key_expires_at: DateTime<Utc>,
}

/// `POST /admin/keys/{id}/credits` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// Credits to add, 1 to 2^53 - 1; the balance may not pass 2^53 - 1.
    #[serde(deserialize_with = "body::integer")]
    #[schema(example = 500, minimum = 1, maximum = 9007199254740991_u64)]
    pub add: u64,
}

/// `POST /admin/keys/{id}/credits` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    pub id: String,
    /// The balance after the top-up.
    pub credits: u64,
}

/// Creates an API key; its secret is shown in this answer only.
#[utoipa::path(
    post, path = "/admin/keys", tag = "admin",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 400, description = "Malformed JSON, or a bad name, credits, expires_at (not in the future) or rate_limit", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = TooLarge),
        (status = 415, response = WrongMediaType),
    )
)]
#[instrument(skip_all)]
pub async fn create_key(
    state: web::Data<AppState>,
    body: web::Json<Object<CreateKey>>,
) -> Result<HttpResponse, ApiError> {
    let Object(body) = body.into_inner();
    let name = checked_name("name", &body.name)?;
    if let Some(expires_at) = body.expires_at {
        if expires_at <= Utc::now() {
            return Err(ApiError::BadRequest(
                "expires_at: must be in the future".into(),
            ));
        }
    }
    let rate_limit = body
        .rate_limit
        .as_ref()
        .map(RateLimitBody::parse)
        .transpose()?;
    let new = NewKey {
        name,
        credits: body.credits,
        expires_at: body.expires_at,
        rate_limit,
    };
    let (key, info) = create(&state, new, "POST /admin/keys").await?;
    Ok(HttpResponse::Created().json(CreatedKey {
        key: key.expose().to_owned(),
        info,
    }))
}

/// The original design's way to get a key.
#[utoipa::path(
    post, path = "/create_user", tag = "admin",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = CreatedUser),
        (status = 400, response = BadBody),
        (status = 413, response = TooLarge),
        (status = 415, response = WrongMediaType),
    )
)]
#[instrument(skip_all)]
pub async fn create_user(
    state: web::Data<AppState>,
    body: web::Json<Object<NewUser>>,
) -> Result<HttpResponse, ApiError> {
    let Object(body) = body.into_inner();
    let name = checked_name("username", &body.username)?;
    let new = NewKey {
        name,
        credits: body.credits,
        expires_at: None,
        rate_limit: None,
    };
    let (key, info) = create(&state, new, "POST /create_user").await?;
    Ok(HttpResponse::Created().json(CreatedUser {
        api_key: key.expose().to_owned(),
        username: info.name,
        credits: info.credits,
    }))
}

/// Every key's description (never a secret).
#[utoipa::path(
    get, path = "/admin/keys", tag = "admin",
    responses(
        (status = 200, description = "Every key", body = KeyList),
    )
)]
#[instrument(skip_all)]
pub async fn list_keys(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.credits.keys().await?;
    Ok(HttpResponse::Ok().json(KeyList { keys }))
}

/// One key's description (never its secret).
#[utoipa::path(
    get, path = "/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key", body = KeyInfo),
        (status = 404, response = KeyNotFound),
    )
)]
#[instrument(skip_all, fields(key_id = %id))]
pub async fn get_key(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = KeyId::parse(&id)?;
    Ok(HttpResponse::Ok().json(state.credits.key(&id).await?))
}

/// Revokes a key: every secret of it is refused (401) from now on. Idempotent. The key's
/// record stays (a soft delete): `GET /admin/keys/{id}` keeps answering it, with
/// `revoked: true`, and its ledger can still be audited and rebuilt.
#[utoipa::path(
    delete, path = "/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked; the key's description", body = KeyInfo),
        (status = 404, response = KeyNotFound),
    )
)]
#[instrument(skip_all, fields(key_id = %id))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = KeyId::parse(&id)?;
    let info = state.credits.revoke(&id).await?;
    tracing::info!("API key revoked.");
    Ok(HttpResponse::Ok().json(info))
}

/// Gives the key a new secret, shown once. The previous secret keeps working, on the same
/// balance, for the grace period, then is refused (401).
#[utoipa::path(
    post, path = "/admin/keys/{id}/rotate", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = Option<Rotate>, description = "Optional: no body, an empty one, `null` or `{}` use the default grace period"),
    responses(
        (status = 200, description = "Rotated", body = RotatedKey),
        (status = 400, response = BadBody),
        (status = 404, response = KeyNotFound),
        (status = 409, description = "The key is revoked", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = TooLarge),
        (status = 415, response = WrongMediaType),
    )
)]
#[instrument(skip_all, fields(key_id = %id))]
pub async fn rotate_key(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = KeyId::parse(&id)?;
    let rotate: Rotate = body::optional_json(&request, &body)?.unwrap_or_default();
    let grace_seconds = rotate
        .grace_seconds
        .unwrap_or(state.config.rotation_grace_seconds);
    if grace_seconds > MAX_GRACE_SECONDS {
        return Err(ApiError::BadRequest(format!(
            "grace_seconds: must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    let (key, previous_key_expires_at) = state.credits.rotate(&id, grace_seconds).await?;
    tracing::info!(grace_seconds, "API key rotated.");
    Ok(HttpResponse::Ok().json(RotatedKey {
        key: key.expose().to_owned(),
        id: id.to_string(),
        previous_key_expires_at,
    }))
}

/// Adds credits to a key (atomically); answers the new balance.
#[utoipa::path(
    post, path = "/admin/keys/{id}/credits", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    request_body = TopUp,
    responses(
        (status = 200, description = "The new balance", body = Balance),
        (status = 400, response = BadBody),
        (status = 404, response = KeyNotFound),
        (status = 409, description = "The balance would pass 2^53 - 1", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = TooLarge),
        (status = 415, response = WrongMediaType),
    )
)]
#[instrument(skip_all, fields(key_id = %id))]
pub async fn top_up(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Object<TopUp>>,
) -> Result<HttpResponse, ApiError> {
    let Object(body) = body.into_inner();
    let id = KeyId::parse(&id)?;
    let credits = state
        .credits
        .top_up(&id, body.add, "POST /admin/keys/{id}/credits")
        .await?;
    tracing::info!(added = body.add, credits, "API key topped up.");
    Ok(HttpResponse::Ok().json(Balance {
        id: id.to_string(),
        credits,
    }))
}

/// Sets the key's own rate limit (its budget starts afresh).
#[utoipa::path(
    put, path = "/admin/keys/{id}/rate_limit", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    request_body = RateLimitBody,
    responses(
        (status = 200, description = "The key's description", body = KeyInfo),
        (status = 400, response = BadBody),
        (status = 404, response = KeyNotFound),
        (status = 413, response = TooLarge),
        (status = 415, response = WrongMediaType),
    )
)]
#[instrument(skip_all, fields(key_id = %id))]
pub async fn set_rate_limit(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Object<RateLimitBody>>,
) -> Result<HttpResponse, ApiError> {
    let Object(body) = body.into_inner();
    let id = KeyId::parse(&id)?;
    let limit = body.parse()?;
    let info = state.credits.set_rate_limit(&id, limit).await?;
    tracing::info!(
        requests = limit.requests(),
        per_seconds = limit.per_seconds(),
        "API key rate limit set."
    );
    Ok(HttpResponse::Ok().json(info))
}

/// Compares every key's Redis balance with its usage ledger (granted - charged + refunded)
/// and lists the keys that differ. This gateway's pending ledger events are written first;
/// a key in use meanwhile may differ by its requests in flight.
#[utoipa::path(
    get, path = "/admin/audit", tag = "admin",
    responses(
        (status = 200, description = "Keys whose balances differ (none: all match)", body = AuditReport),
    )
)]
#[instrument(skip_all)]
pub async fn audit(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.ledger.flush(LEDGER_FLUSH_TIMEOUT).await?;
    let report = audit::audit(&state.credits, &state.clickhouse).await?;
    tracing::info!(
        checked = report.checked,
        differences = report.differences.len(),
        "Balances audited."
    );
    Ok(HttpResponse::Ok().json(report))
}

/// Sets the key's Redis balance to its ledger balance (granted - charged + refunded). Run it
/// while the key is idle (e.g. revoked, or after an audit showed a difference that stays).
#[utoipa::path(
    post, path = "/admin/keys/{id}/rebuild", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Rebuilt; the balances before and after", body = Rebuilt),
        (status = 404, response = KeyNotFound),
        (status = 409, description = "The key has no ledger rows, or its ledger balance is negative", body = Problem, content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all, fields(key_id = %id))]
pub async fn rebuild_key(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = KeyId::parse(&id)?;
    state.ledger.flush(LEDGER_FLUSH_TIMEOUT).await?;
    let rebuilt = audit::rebuild(&state.credits, &state.clickhouse, &id).await?;
    Ok(HttpResponse::Ok().json(rebuilt))
}

/// Creates the key `new`, its credits recorded as granted by `endpoint`.
async fn create(
    state: &AppState,
    new: NewKey<'_>,
    endpoint: &'static str,
) -> Result<(ApiKey, KeyInfo), ApiError> {
    let (key, info) = state.credits.create_key(new, endpoint).await?;
    let name = info.name.as_str();
    tracing::info!(key_id = %info.id, name, credits = info.credits, "API key created.");
    Ok((key, info))
}

/// A key's name as the document describes it (`minLength`, `maxLength` and a `pattern`
/// requiring a character that is not white space), trimmed.
fn checked_name<'a>(field: &str, name: &'a str) -> Result<&'a str, ApiError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest(format!(
            "{field}: 1 to 200 characters, not all white space"
        )));
    }
    Ok(trimmed)
}

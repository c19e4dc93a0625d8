use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct NewKey {
    pub name: String,
    pub credits: u64,
}

/// Compatibility with the original design: `{"username", "credits"}` → `{"api_key"}`.
#[derive(Debug, Deserialize)]
pub struct NewUser {
    pub username: String,
    pub credits: u64,
}

/// `POST /admin/keys`: creates an API key; its secret is shown in this answer only.
pub async fn create_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    authorize_admin(&state, &request)?;
    let name = checked_name(&body.name)?;
    let (key, info) = state.credits.create_key(name, body.credits).await?;
    tracing::info!(key_id = %info.id, name, credits = info.credits, "API key created.");
    Ok(HttpResponse::Created().json(serde_json::json!({
        "key": key.expose(),
        "id": info.id,
        "name": info.name,
        "credits": info.credits,
    })))
}

/// `POST /create_user`: the original design's way to get a key.
pub async fn create_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    authorize_admin(&state, &request)?;
    let name = checked_name(&body.username)?;
    let (key, info) = state.credits.create_key(name, body.credits).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "api_key": key.expose(),
        "username": info.name,
        "credits": info.credits,
    })))
}

fn checked_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest("name: 1 to 200 characters".into()));
    }
    Ok(name)
}

/// Compares the bearer token with the configured one in constant time.
fn authorize_admin(state: &AppState, request: &HttpRequest) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::NotAdmin)?;
    let expected = state.config.admin_token.expose_secret();
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::NotAdmin)
    }
}

//! Who is asking: a client by its API key (`X-API-Key`), the admin by the bearer token. Every
//! admin route is behind [`admin_only`], which authenticates before anything else is read.

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::state::AppState;
use crate::credits::ApiKey;
use crate::error::ApiError;

/// The API key a client sent as `X-API-Key`: 401 when it is missing (`MissingApiKey`) or not
/// of a key's shape. Read after the query string (a malformed one is a 400 first), before
/// anything else.
pub struct ClientKey(pub ApiKey);

impl FromRequest for ClientKey {
    type Error = ApiError;
    type Future = Ready<Result<ClientKey, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(client_key(request).map(ClientKey))
    }
}

fn client_key(request: &HttpRequest) -> Result<ApiKey, ApiError> {
    let key = request
        .headers()
        .get("X-API-Key")
        .ok_or(ApiError::MissingApiKey)?;
    Ok(ApiKey::parse(
        key.to_str().map_err(|_| ApiError::UnknownApiKey)?,
    )?)
}

/// Authenticates every admin route before anything else of the request is read (its body,
/// its path): an unauthenticated caller gets a 401 and learns nothing of the API's shape.
pub async fn admin_only(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .expect("the application state is registered");
    authorize_admin(state, request.request())?;
    next.call(request).await
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

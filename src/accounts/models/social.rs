//! Social login's rows and answers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A flow as `start` stores it.
pub struct NewFlow<'a> {
    pub state_hash: &'a str,
    pub provider: &'a str,
    pub intent: &'a str,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub nonce: &'a str,
    /// Sealed under the data keys.
    pub pkce_verifier: &'a [u8],
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
}

/// A flow taken by its callback.
#[derive(Debug)]
pub struct FlowRow {
    pub id: Uuid,
    pub intent: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub nonce: String,
    pub pkce_verifier: Vec<u8>,
    pub redirect_uri: String,
}

/// A login code taken by the exchange.
#[derive(Debug)]
pub struct Redeemed {
    pub user_id: Uuid,
    pub code_challenge: String,
    pub provider: String,
    pub connection_id: Uuid,
}

#[derive(Debug)]
pub struct ConnectionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: String,
}

/// `GET /users/me/connections`: a linked identity, without its token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    pub id: Uuid,
    pub provider: String,
    /// The address the provider gave at the last sign-in.
    pub email: Option<String>,
    /// `active` or `revoked` (the account was deactivated).
    pub status: String,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `GET /auth/oidc/providers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderInfo {
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Providers {
    pub items: Vec<ProviderInfo>,
}

/// `POST /auth/oidc/{provider}/start`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationStarted {
    /// Where to send the browser (the provider's authorization endpoint).
    pub authorization_url: String,
}

//! Passkeys on the security page: rename and remove are forms; adding one is a ceremony the
//! console's script runs (`navigator.credentials.create()`) between two JSON calls here,
//! which answer as the API does (its error bodies included).

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Browser, Signed, checked, csrf_form, security::again_at_security, see_other};
use crate::{
    accounts::{forms::mfa::attestation, service},
    core::{AppError, AppState},
    otp::passkeys::parse_name,
};

csrf_form!(
    struct StartForm {
        password: String,
    }
);

/// POST /account/passkeys/start: the creation options for the signed-in user.
pub async fn start(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<StartForm>(&state, &user, &body) else {
        return super::forged();
    };
    match service::passkey_register_start(&state, &client, &user, Some(SecretString::from(f.password))).await {
        Ok(options) => Json(options).into_response(),
        Err(e) => e.into_response(),
    }
}

csrf_form!(
    struct FinishForm {
        ceremony_id: Option<Uuid>,
        name: String,
        /// The `PublicKeyCredential` JSON of `navigator.credentials.create()`.
        credential: String,
    }
);

/// POST /account/passkeys/finish: stores the passkey; 201 with it.
pub async fn finish(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<FinishForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = async {
        let ceremony = f.ceremony_id.ok_or_else(|| AppError::validation("ceremony_id", "is required"))?;
        let name = parse_name(&f.name).map_err(|m| AppError::validation("name", m))?;
        let credential = serde_json::from_str(&f.credential)
            .map_err(|_| "is not JSON")
            .and_then(attestation)
            .map_err(|m| AppError::validation("credential", m))?;
        service::passkey_register_finish(&state, &client, &user, ceremony, &name, &credential).await
    }
    .await;
    match outcome {
        Ok(registered) => (StatusCode::CREATED, Json(registered)).into_response(),
        Err(e) => e.into_response(),
    }
}

csrf_form!(
    struct RenameForm {
        id: Option<Uuid>,
        name: String,
    }
);

/// POST /account/passkeys/rename.
pub async fn rename(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<RenameForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = async {
        let id = f.id.ok_or(AppError::NotFound)?;
        let name = parse_name(&f.name).map_err(|m| AppError::validation("name", m))?;
        service::rename_passkey(&state, &client, &user, id, &name).await
    }
    .await;
    match outcome {
        Ok(_) => see_other("/account/security"),
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

csrf_form!(
    struct IdForm {
        id: Option<Uuid>,
    }
);

/// POST /account/passkeys/remove.
pub async fn remove(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<IdForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = match f.id {
        Some(id) => service::delete_passkey(&state, &client, &user, id).await,
        None => Err(AppError::NotFound),
    };
    match outcome {
        Ok(service::Removal::Done) => see_other("/account/security?done=removed"),
        Ok(service::Removal::ApprovalRequired(_)) => see_other("/account/security?done=approval"),
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

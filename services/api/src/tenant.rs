//! The tenant API under `/v1`: tokens, the caller's domains, their aliases and mailboxes.
//!
//! Every domain in a path is checked against the caller before anything else: a domain of
//! another tenant (or one that does not exist, or is not a valid name) is `404`, the same
//! answer, so that nobody can probe which domains other tenants host. A domain of the caller's
//! own tenant that a `domain-admin` does not manage is `403`. Alias writes are then made with
//! the administrator's own directory identity, which the directory confines to its tenant
//! again (docs/directory.md, "Writes made as the tenant administrator").

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use mailfold_directory::provision::effective_limits;
use mailfold_directory::{Address, AliasUpdate, Domain, LocalDomain, NewAlias, Status};
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::auth::TenantAdmin;
use crate::error::ApiError;
use crate::input::{self, Fields, Page};
use crate::{ApiState, views};

/// The tenant routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/tokens", post(issue_token))
        .route("/v1/tokens/current", delete(revoke_token))
        .route("/v1/domains", get(list_domains))
        .route("/v1/domains/{domain}", get(show_domain))
        .route(
            "/v1/domains/{domain}/aliases",
            get(list_aliases).post(create_alias),
        )
        .route(
            "/v1/domains/{domain}/aliases/{address}",
            get(show_alias)
                .put(replace_alias)
                .patch(change_alias)
                .delete(delete_alias),
        )
        .route("/v1/domains/{domain}/mailboxes", get(list_mailboxes))
}

/// One name from the path, or why it did not parse.
pub(crate) type OneName = Result<Path<String>, PathRejection>;
/// Two names from the path.
pub(crate) type TwoNames = Result<Path<(String, String)>, PathRejection>;
/// The query string's parameters.
pub(crate) type QueryParams = Result<axum::extract::Query<HashMap<String, String>>, QueryRejection>;

async fn issue_token(
    State(state): State<ApiState>,
    caller: TenantAdmin,
) -> Result<Response, ApiError> {
    if caller.token.is_some() {
        return Err(ApiError::forbidden(
            "a token is issued for a password login, not for another token",
        ));
    }
    let lifetime = state.settings().token_lifetime;
    let issued = state
        .directory()
        .issue_token(&caller.admin, lifetime)
        .await?;
    audit::record(
        &actor(&caller),
        "token.issue",
        &caller.admin.login,
        None,
        None,
    );
    let body = json!({
        "token": issued.token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn revoke_token(
    State(state): State<ApiState>,
    caller: TenantAdmin,
) -> Result<Response, ApiError> {
    let Some(token) = &caller.token else {
        return Err(ApiError::bad_request(
            "this request carries no token to revoke",
        ));
    };
    state.directory().revoke_token(&caller.admin, token).await?;
    audit::record(
        &actor(&caller),
        "token.revoke",
        &caller.admin.login,
        None,
        None,
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_domains(
    State(state): State<ApiState>,
    caller: TenantAdmin,
) -> Result<Response, ApiError> {
    let tenant = state.directory().tenant(&caller.admin.tenant).await?;
    let mut items = Vec::new();
    for domain in state.directory().domains_of(&tenant).await? {
        if caller.admin.manages(&domain.name) {
            items.push(domain_view(&state, &domain).await?);
        }
    }
    Ok(axum::Json(json!({ "items": items })).into_response())
}

async fn show_domain(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: OneName,
) -> Result<Response, ApiError> {
    let domain = owned_domain(&state, &caller, &name_of(path)?).await?;
    Ok(axum::Json(domain_view(&state, &domain).await?).into_response())
}

async fn list_aliases(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: OneName,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let page = page_of(query)?;
    let domain = owned_domain(&state, &caller, &name_of(path)?).await?;
    let aliases = state.directory().aliases(domain.name.as_str()).await?;
    let (aliases, next) = page.cut(aliases, |a| a.address.to_string());
    let items: Vec<Value> = aliases.iter().map(views::alias).collect();
    Ok(axum::Json(json!({ "items": items, "next": next })).into_response())
}

async fn create_alias(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: OneName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let domain = owned_domain(&state, &caller, &name_of(path)?).await?;
    let mut fields = input::json_object(&headers, body, state.settings().max_body_bytes).await?;
    let address = full_address(&fields.string("address")?, &domain.name);
    let targets = fields
        .strings("targets")?
        .ok_or_else(|| ApiError::invalid("targets", "targets: required"))?;
    let description = fields.optional_string("description")?;
    fields.finish()?;

    let new = NewAlias {
        address,
        targets,
        description,
    };
    let alias = state
        .directory()
        .create_alias(caller.admin.actor(), domain.name.as_str(), new)
        .await?;
    let view = views::alias(&alias);
    audit::record(
        &actor(&caller),
        "alias.create",
        alias.address.as_str(),
        None,
        Some(&view),
    );

    let location = format!("/v1/domains/{}/aliases/{}", domain.name, alias.address);
    let mut response = (StatusCode::CREATED, axum::Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn show_alias(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: TwoNames,
) -> Result<Response, ApiError> {
    let (domain, address) = names_of(path)?;
    let domain = owned_domain(&state, &caller, &domain).await?;
    let alias = alias_in(&state, &domain, &address).await?;
    Ok(axum::Json(views::alias(&alias)).into_response())
}

async fn replace_alias(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: TwoNames,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = input::json_object(&headers, body, state.settings().max_body_bytes).await?;
    // PUT replaces the whole alias: what is left out goes back to its default.
    let update = AliasUpdate {
        targets: Some(
            fields
                .strings("targets")?
                .ok_or_else(|| ApiError::invalid("targets", "targets: required"))?,
        ),
        description: Some(fields.optional_string("description")?),
        status: Some(alias_status(&mut fields)?.unwrap_or(Status::Active)),
    };
    fields.finish()?;
    update_alias(state, caller, path, update).await
}

async fn change_alias(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: TwoNames,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = input::json_object(&headers, body, state.settings().max_body_bytes).await?;
    let update = AliasUpdate {
        targets: fields.strings("targets")?,
        description: fields.edit_string("description")?,
        status: alias_status(&mut fields)?,
    };
    fields.finish()?;
    update_alias(state, caller, path, update).await
}

async fn update_alias(
    state: ApiState,
    caller: TenantAdmin,
    path: TwoNames,
    update: AliasUpdate,
) -> Result<Response, ApiError> {
    let (domain, address) = names_of(path)?;
    let domain = owned_domain(&state, &caller, &domain).await?;
    let before = alias_in(&state, &domain, &address).await?;
    let after = state
        .directory()
        .update_alias(caller.admin.actor(), before.address.as_str(), update)
        .await?;
    let (before, after) = (views::alias(&before), views::alias(&after));
    audit::record(
        &actor(&caller),
        "alias.update",
        &address,
        Some(&before),
        Some(&after),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_alias(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: TwoNames,
) -> Result<Response, ApiError> {
    let (domain, address) = names_of(path)?;
    let domain = owned_domain(&state, &caller, &domain).await?;
    let alias = alias_in(&state, &domain, &address).await?;
    state
        .directory()
        .delete_alias(caller.admin.actor(), alias.address.as_str())
        .await?;
    let before = views::alias(&alias);
    audit::record(
        &actor(&caller),
        "alias.delete",
        alias.address.as_str(),
        Some(&before),
        None,
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_mailboxes(
    State(state): State<ApiState>,
    caller: TenantAdmin,
    path: OneName,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let page = page_of(query)?;
    let domain = owned_domain(&state, &caller, &name_of(path)?).await?;
    mailbox_page(&state, &domain, &page, views::mailbox).await
}

/// One page of a domain's mailboxes with their usage, each shown by `view`.
pub(crate) async fn mailbox_page(
    state: &ApiState,
    domain: &LocalDomain,
    page: &Page,
    view: fn(&mailfold_directory::Mailbox, Option<mailfold_store::Usage>) -> Value,
) -> Result<Response, ApiError> {
    let mailboxes = state.directory().mailboxes(domain).await?;
    let (mailboxes, next) = page.cut(mailboxes, |m| m.address.to_string());
    let usage = state.usage(&mailboxes).await;
    let items: Vec<Value> = mailboxes
        .iter()
        .zip(usage)
        .map(|(m, u)| view(m, u))
        .collect();
    Ok(axum::Json(json!({ "items": items, "next": next })).into_response())
}

/// The caller's domain named `name`: 404 unless it is a domain of the caller's tenant, 403
/// when the caller does not manage it.
async fn owned_domain(
    state: &ApiState,
    caller: &TenantAdmin,
    name: &str,
) -> Result<Arc<LocalDomain>, ApiError> {
    // A name that is not a domain names nothing that exists.
    let domain = match state.directory().local_domain(name).await {
        Ok(domain) => domain,
        Err(mailfold_directory::DirectoryError::Invalid(_)) => return Err(ApiError::not_found()),
        Err(error) => return Err(error.into()),
    };
    if domain.tenant.id != caller.admin.tenant {
        tracing::info!(admin = %caller.admin.dn, domain = %domain.name, "domain of another tenant asked for");
        return Err(ApiError::not_found());
    }
    if !caller.admin.manages(&domain.name) {
        return Err(ApiError::forbidden(format!(
            "{} is not among your domains",
            domain.name
        )));
    }
    Ok(domain)
}

/// The alias `address` of `domain`; an alias of any other domain is not found here.
async fn alias_in(
    state: &ApiState,
    domain: &LocalDomain,
    address: &str,
) -> Result<mailfold_directory::Alias, ApiError> {
    let Ok(parsed) = Address::parse(address) else {
        return Err(ApiError::not_found());
    };
    if parsed.domain() != domain.name.as_str() {
        return Err(ApiError::not_found());
    }
    Ok(state.directory().alias(parsed.as_str()).await?)
}

async fn domain_view(state: &ApiState, domain: &LocalDomain) -> Result<Value, ApiError> {
    let usage = state.directory().domain_usage(domain).await?;
    Ok(views::domain(domain, usage, &effective_limits(domain)))
}

/// `local` means `local@<domain>`; anything with an `@` is taken as written.
fn full_address(given: &str, domain: &Domain) -> String {
    if given.contains('@') {
        given.to_string()
    } else {
        format!("{given}@{domain}")
    }
}

/// A tenant may switch an alias on and off; `deleting` is the operator's.
fn alias_status(fields: &mut Fields) -> Result<Option<Status>, ApiError> {
    match fields.status("status")? {
        Some(Status::Deleting) => Err(ApiError::invalid(
            "status",
            "status: active, suspended or disabled",
        )),
        other => Ok(other),
    }
}

fn actor(caller: &TenantAdmin) -> Actor {
    Actor::Admin(format!("{}@{}", caller.admin.login, caller.admin.tenant))
}

/// A path that does not parse names nothing that exists.
pub(crate) fn name_of(path: OneName) -> Result<String, ApiError> {
    path.map(|Path(name)| name)
        .map_err(|_| ApiError::not_found())
}

pub(crate) fn names_of(path: TwoNames) -> Result<(String, String), ApiError> {
    path.map(|Path(names)| names)
        .map_err(|_| ApiError::not_found())
}

/// The paging parameters, refusing a query string that does not parse.
pub(crate) fn page_of(query: QueryParams) -> Result<Page, ApiError> {
    let query = query.map_err(|_| ApiError::bad_request("malformed query string"))?;
    Page::from_query(&query.0)
}

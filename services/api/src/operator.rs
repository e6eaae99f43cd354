//! The operator API under `/v1/admin`: provisioning tenants, domains, mailboxes and tenant
//! administrators. Every route needs the operator token ([`Operator`]).
//!
//! Writes go through the directory's provisioning operations, which check syntax, collisions
//! and limits. A new mailbox's shard is chosen here: the one the request names, else the
//! domain's `mailfoldMailShard`, else the tenant's, else the configured placement policy
//! ([`ShardPolicy`]); whichever it is must be a shard this process knows.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mailfold_directory::provision::{
    AdminUpdate, DomainUpdate, MailboxUpdate, NewAdmin, NewDomain, NewMailbox, NewTenant, Settings,
    TenantUpdate, effective_limits,
};
use mailfold_directory::{Address, LocalDomain, Mailbox};
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::auth::Operator;
use crate::error::ApiError;
use crate::input::{self, Fields};
use crate::tenant::{OneName, QueryParams, TwoNames, mailbox_page, name_of, names_of, page_of};
use crate::{ApiState, ShardPolicy, views};

/// The operator routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/admin/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/v1/admin/tenants/{tenant}",
            get(show_tenant).patch(change_tenant).delete(delete_tenant),
        )
        .route(
            "/v1/admin/tenants/{tenant}/domains",
            get(list_domains).post(create_domain),
        )
        .route(
            "/v1/admin/tenants/{tenant}/admins",
            get(list_admins).post(create_admin),
        )
        .route(
            "/v1/admin/tenants/{tenant}/admins/{login}",
            get(show_admin).patch(change_admin).delete(delete_admin),
        )
        .route(
            "/v1/admin/domains/{domain}",
            get(show_domain).patch(change_domain).delete(delete_domain),
        )
        .route(
            "/v1/admin/domains/{domain}/mailboxes",
            get(list_mailboxes).post(create_mailbox),
        )
        .route(
            "/v1/admin/domains/{domain}/mailboxes/{address}",
            get(show_mailbox)
                .patch(change_mailbox)
                .delete(delete_mailbox),
        )
}

async fn list_tenants(State(state): State<ApiState>, _: Operator) -> Result<Response, ApiError> {
    let tenants = state.directory().tenants().await?;
    let items: Vec<Value> = tenants.iter().map(views::tenant).collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
}

async fn create_tenant(
    State(state): State<ApiState>,
    _: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = body_of(&state, &headers, body).await?;
    let new = NewTenant {
        id: fields.string("id")?,
        name: fields.optional_string("name")?,
        settings: settings(&mut fields)?,
    };
    fields.finish()?;
    let tenant = state.directory().create_tenant(new).await?;
    let view = views::tenant(&tenant);
    audit::record(
        &Actor::Operator,
        "tenant.create",
        &tenant.id,
        None,
        Some(&view),
    );
    Ok(created(view))
}

async fn show_tenant(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
) -> Result<Response, ApiError> {
    let tenant = state.directory().tenant(&name_of(path)?).await?;
    Ok(axum::Json(views::tenant(&tenant)).into_response())
}

async fn change_tenant(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = name_of(path)?;
    let mut fields = body_of(&state, &headers, body).await?;
    let update = TenantUpdate {
        name: fields.edit_string("name")?,
        settings: settings(&mut fields)?,
    };
    fields.finish()?;
    let before = views::tenant(&state.directory().tenant(&id).await?);
    let after = views::tenant(&state.directory().update_tenant(&id, update).await?);
    audit::record(
        &Actor::Operator,
        "tenant.update",
        &id,
        Some(&before),
        Some(&after),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_tenant(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
) -> Result<Response, ApiError> {
    let id = name_of(path)?;
    let before = views::tenant(&state.directory().tenant(&id).await?);
    state.directory().delete_tenant(&id).await?;
    audit::record(&Actor::Operator, "tenant.delete", &id, Some(&before), None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_domains(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
) -> Result<Response, ApiError> {
    let tenant = state.directory().tenant(&name_of(path)?).await?;
    let mut items = Vec::new();
    for domain in state.directory().domains_of(&tenant).await? {
        items.push(domain_view(&state, &domain).await?);
    }
    Ok(axum::Json(json!({ "items": items })).into_response())
}

async fn create_domain(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = name_of(path)?;
    let mut fields = body_of(&state, &headers, body).await?;
    let new = NewDomain {
        name: fields.string("name")?,
        alias_names: fields.strings("alias_names")?.unwrap_or_default(),
        catch_all: fields.strings("catch_all")?.unwrap_or_default(),
        settings: settings(&mut fields)?,
    };
    fields.finish()?;
    let domain = state.directory().create_domain(&tenant, new).await?;
    let view = domain_view(&state, &domain).await?;
    audit::record(
        &Actor::Operator,
        "domain.create",
        domain.name.as_str(),
        None,
        Some(&view),
    );
    Ok(created(view))
}

async fn show_domain(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
) -> Result<Response, ApiError> {
    let domain = state.directory().local_domain(&name_of(path)?).await?;
    Ok(axum::Json(domain_view(&state, &domain).await?).into_response())
}

async fn change_domain(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = name_of(path)?;
    let mut fields = body_of(&state, &headers, body).await?;
    let update = DomainUpdate {
        alias_names: fields.strings("alias_names")?,
        catch_all: fields
            .edit_strings("catch_all")?
            .map(Option::unwrap_or_default),
        settings: settings(&mut fields)?,
    };
    fields.finish()?;
    let current = state.directory().local_domain(&name).await?;
    let before = domain_view(&state, &current).await?;
    let domain = state.directory().update_domain(&name, update).await?;
    let after = domain_view(&state, &domain).await?;
    audit::record(
        &Actor::Operator,
        "domain.update",
        &name,
        Some(&before),
        Some(&after),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_domain(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
) -> Result<Response, ApiError> {
    let name = name_of(path)?;
    let current = state.directory().local_domain(&name).await?;
    let before = domain_view(&state, &current).await?;
    state.directory().delete_domain(&name).await?;
    audit::record(
        &Actor::Operator,
        "domain.delete",
        &name,
        Some(&before),
        None,
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_mailboxes(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let page = page_of(query)?;
    let domain = state.directory().local_domain(&name_of(path)?).await?;
    mailbox_page(&state, &domain, &page, views::mailbox_for_operator).await
}

async fn create_mailbox(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let domain = state.directory().local_domain(&name_of(path)?).await?;
    let mut fields = body_of(&state, &headers, body).await?;
    let address = fields.string("address")?;
    let shard = fields.optional_string("shard")?;
    let new = NewMailbox {
        aliases: fields.strings("aliases")?.unwrap_or_default(),
        password: fields.optional_string("password")?,
        name: fields.optional_string("name")?,
        quota_bytes: fields.number("quota_bytes")?,
        quota_messages: fields.number("quota_messages")?,
        max_message_size: fields.number("max_message_size")?,
        status: fields.status("status")?,
        services: fields.services("services")?.flatten(),
        forward: fields.strings("forward")?.unwrap_or_default(),
        address,
    };
    fields.finish()?;

    let shard = place(&state, &domain, shard.as_deref(), &new.address)?;
    let mailbox = state
        .directory()
        .create_mailbox(&domain, new, &shard)
        .await?;
    let view = mailbox_view(&state, &mailbox).await;
    audit::record(
        &Actor::Operator,
        "mailbox.create",
        mailbox.address.as_str(),
        None,
        Some(&view),
    );
    Ok(created(view))
}

async fn show_mailbox(
    State(state): State<ApiState>,
    _: Operator,
    path: TwoNames,
) -> Result<Response, ApiError> {
    let (domain, address) = names_of(path)?;
    let domain = state.directory().local_domain(&domain).await?;
    let mailbox = state.directory().mailbox_in(&domain, &address).await?;
    Ok(axum::Json(mailbox_view(&state, &mailbox).await).into_response())
}

async fn change_mailbox(
    State(state): State<ApiState>,
    _: Operator,
    path: TwoNames,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (domain, address) = names_of(path)?;
    let domain = state.directory().local_domain(&domain).await?;
    let mut fields = body_of(&state, &headers, body).await?;
    let update = MailboxUpdate {
        password: fields.optional_string("password")?,
        name: fields.optional_string("name")?,
        quota_bytes: fields.edit_number("quota_bytes")?,
        quota_messages: fields.edit_number("quota_messages")?,
        max_message_size: fields.edit_number("max_message_size")?,
        status: fields.status("status")?,
        services: fields.services("services")?,
        forward: fields
            .edit_strings("forward")?
            .map(Option::unwrap_or_default),
    };
    fields.finish()?;
    let before = state.directory().mailbox_in(&domain, &address).await?;
    let before = mailbox_view(&state, &before).await;
    let mailbox = state
        .directory()
        .update_mailbox(&domain, &address, update)
        .await?;
    let after = mailbox_view(&state, &mailbox).await;
    audit::record(
        &Actor::Operator,
        "mailbox.update",
        &address,
        Some(&before),
        Some(&after),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_mailbox(
    State(state): State<ApiState>,
    _: Operator,
    path: TwoNames,
) -> Result<Response, ApiError> {
    let (domain, address) = names_of(path)?;
    let domain = state.directory().local_domain(&domain).await?;
    let before = state.directory().mailbox_in(&domain, &address).await?;
    let before = mailbox_view(&state, &before).await;
    let mailbox = state.directory().delete_mailbox(&domain, &address).await?;
    let after = mailbox_view(&state, &mailbox).await;
    audit::record(
        &Actor::Operator,
        "mailbox.delete",
        &address,
        Some(&before),
        Some(&after),
    );
    // The entry stays (marked deleting) until the operator purges it: answer with it.
    Ok((StatusCode::ACCEPTED, axum::Json(after)).into_response())
}

async fn list_admins(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
) -> Result<Response, ApiError> {
    let tenant = state.directory().tenant(&name_of(path)?).await?;
    let admins = state.directory().admins(&tenant).await?;
    let items: Vec<Value> = admins.iter().map(views::admin).collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
}

async fn create_admin(
    State(state): State<ApiState>,
    _: Operator,
    path: OneName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = name_of(path)?;
    let mut fields = body_of(&state, &headers, body).await?;
    let new = NewAdmin {
        login: fields.string("login")?,
        password: fields.string("password")?,
        mail: fields.optional_string("mail")?,
        name: fields.optional_string("name")?,
        role: fields
            .optional_string("role")?
            .unwrap_or_else(|| "owner".into()),
        managed_domains: fields.strings("managed_domains")?.unwrap_or_default(),
    };
    fields.finish()?;
    let admin = state.directory().create_admin(&tenant, new).await?;
    let view = views::admin(&admin);
    let object = format!("{}@{}", admin.login, admin.tenant);
    audit::record(&Actor::Operator, "admin.create", &object, None, Some(&view));
    Ok(created(view))
}

async fn show_admin(
    State(state): State<ApiState>,
    _: Operator,
    path: TwoNames,
) -> Result<Response, ApiError> {
    let (tenant, login) = names_of(path)?;
    let tenant = state.directory().tenant(&tenant).await?;
    let admin = state.directory().admin(&tenant, &login).await?;
    Ok(axum::Json(views::admin(&admin)).into_response())
}

async fn change_admin(
    State(state): State<ApiState>,
    _: Operator,
    path: TwoNames,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, login) = names_of(path)?;
    let mut fields = body_of(&state, &headers, body).await?;
    let update = AdminUpdate {
        password: fields.optional_string("password")?,
        mail: fields.edit_string("mail")?,
        name: fields.optional_string("name")?,
        role: fields.optional_string("role")?,
        managed_domains: fields.strings("managed_domains")?,
        status: fields.status("status")?,
    };
    fields.finish()?;
    let owner = state.directory().tenant(&tenant).await?;
    let before = views::admin(&state.directory().admin(&owner, &login).await?);
    let admin = state
        .directory()
        .update_admin(&tenant, &login, update)
        .await?;
    let after = views::admin(&admin);
    let object = format!("{}@{}", admin.login, admin.tenant);
    audit::record(
        &Actor::Operator,
        "admin.update",
        &object,
        Some(&before),
        Some(&after),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_admin(
    State(state): State<ApiState>,
    _: Operator,
    path: TwoNames,
) -> Result<Response, ApiError> {
    let (tenant, login) = names_of(path)?;
    let owner = state.directory().tenant(&tenant).await?;
    let before = views::admin(&state.directory().admin(&owner, &login).await?);
    state.directory().delete_admin(&tenant, &login).await?;
    let object = format!("{login}@{tenant}");
    audit::record(
        &Actor::Operator,
        "admin.delete",
        &object,
        Some(&before),
        None,
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The shard of a new mailbox (see the module documentation).
fn place(
    state: &ApiState,
    domain: &LocalDomain,
    asked: Option<&str>,
    address: &str,
) -> Result<String, ApiError> {
    let shards = &state.settings().shards;
    let pinned = asked
        .or(domain.shard.as_deref())
        .or(domain.tenant.shard.as_deref());
    if let Some(shard) = pinned {
        if shards.iter().any(|s| s == shard) {
            return Ok(shard.to_string());
        }
        return Err(ApiError::invalid(
            "shard",
            format!("shard: {shard:?} is not a configured shard"),
        ));
    }
    if shards.is_empty() {
        return Err(ApiError::invalid(
            "shard",
            "shard: no shards are configured",
        ));
    }
    let index = match state.settings().shard_policy {
        ShardPolicy::First => 0,
        // FNV-1a of the address: stable, so a retried request lands on the same shard.
        ShardPolicy::Spread => {
            let address = Address::parse(address)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let hash = address.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            (hash % shards.len() as u64) as usize
        }
    };
    Ok(shards[index].clone())
}

/// The settings a tenant and a domain share, from the same field names.
fn settings(fields: &mut Fields) -> Result<Settings, ApiError> {
    let status = fields.status("status")?;
    Ok(Settings {
        description: fields.edit_string("description")?,
        status,
        services: fields.services("services")?,
        limits: fields.limits("limits")?,
        shard: fields.edit_string("shard")?,
    })
}

async fn body_of(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Fields, ApiError> {
    input::json_object(headers, body, state.settings().max_body_bytes).await
}

async fn domain_view(state: &ApiState, domain: &LocalDomain) -> Result<Value, ApiError> {
    let usage = state.directory().domain_usage(domain).await?;
    Ok(views::domain(domain, usage, &effective_limits(domain)))
}

async fn mailbox_view(state: &ApiState, mailbox: &Mailbox) -> Value {
    let usage = state.usage(std::slice::from_ref(mailbox)).await;
    views::mailbox_for_operator(mailbox, usage.into_iter().next().flatten())
}

fn created(view: Value) -> Response {
    (StatusCode::CREATED, axum::Json(view)).into_response()
}

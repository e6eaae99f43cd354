//! The directory's administration side, on both backends with the same assertions: tenant
//! administrators' logins and tokens, writes made with an administrator's own authority (which
//! the directory itself confines to its tenant: slapd's ACLs through proxied authorization,
//! the same rule in the LDIF backend), and the operator's provisioning of tenants, domains,
//! mailboxes and administrators with their limits.

use std::time::Duration;

use mailfold_directory::provision::{
    AdminUpdate, DomainUpdate, LimitsUpdate, MailboxUpdate, NewAdmin, NewDomain, NewMailbox,
    NewTenant, Settings,
};
use mailfold_directory::{
    Actor, AdminScope, AliasUpdate, DirectoryError, Domain, LoginFailure, NewAlias, Refusal,
    Resolution, Service, Status,
};
use mailfold_tests::fixture::{Kind, Options, TestDirectory};

fn start(kind: Kind) -> TestDirectory {
    TestDirectory::start(Options::new(kind))
}

fn alias(address: &str, targets: &[&str]) -> NewAlias {
    NewAlias {
        address: address.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        description: None,
    }
}

mailfold_tests::on_both_backends!(
    administrators_log_in_by_mail_or_login_at_tenant,
    inactive_administrators_and_tenants_without_api_are_refused,
    tokens_are_checked_and_revocable,
    an_administrator_writes_only_its_own_tenants_aliases,
    tenants_domains_and_mailboxes_are_provisioned_end_to_end,
    provisioning_limits_and_collisions_are_enforced,
    administrators_are_provisioned_with_their_scope,
    tenants_and_domains_are_removed_only_when_empty,
);

async fn administrators_log_in_by_mail_or_login_at_tenant(kind: Kind) {
    let dir = start(kind);
    let by_mail = dir
        .directory
        .authenticate_admin("jane@acme.test", "jane-pw")
        .await
        .unwrap();
    assert_eq!(
        (by_mail.tenant.as_str(), by_mail.login.as_str()),
        ("acme", "jane")
    );
    assert_eq!(by_mail.scope, AdminScope::AllDomains);

    let by_login = dir
        .directory
        .authenticate_admin("JANE@acme", "jane-pw")
        .await
        .unwrap();
    assert_eq!(by_login, by_mail);

    let shopkeeper = dir
        .directory
        .authenticate_admin("shopkeeper@acme", "shopkeeper-pw")
        .await
        .unwrap();
    assert!(shopkeeper.manages(&Domain::parse("acme-shop.test").unwrap()));
    assert!(!shopkeeper.manages(&Domain::parse("acme.test").unwrap()));

    for (login, password) in [
        ("jane@acme", "wrong"),
        ("jane@acme", ""),
        ("jane@globex", "jane-pw"),
        ("nobody@acme", "x"),
        ("alice@acme.test", "alice-pw"),
        ("jane", "jane-pw"),
        ("*)(uid=*@acme", "jane-pw"),
    ] {
        let refused = dir.directory.authenticate_admin(login, password).await;
        assert!(
            matches!(refused, Err(LoginFailure::Refused(_))),
            "{login}: {refused:?}"
        );
    }
}

async fn inactive_administrators_and_tenants_without_api_are_refused(kind: Kind) {
    let dir = start(kind);
    dir.directory
        .update_admin(
            "acme",
            "jane",
            AdminUpdate {
                status: Some(Status::Suspended),
                ..AdminUpdate::default()
            },
        )
        .await
        .unwrap();
    let suspended = dir
        .directory
        .authenticate_admin("jane@acme", "jane-pw")
        .await;
    assert_eq!(
        suspended,
        Err(LoginFailure::Refused(Refusal::Inactive(Status::Suspended)))
    );

    let no_api = Settings {
        services: Some(Some(vec![Service::Deliver, Service::Pop3])),
        ..Settings::default()
    };
    let update = mailfold_directory::provision::TenantUpdate {
        settings: no_api,
        ..Default::default()
    };
    dir.directory.update_tenant("globex", update).await.unwrap();
    let refused = dir
        .directory
        .authenticate_admin("gina@globex", "gina-pw")
        .await;
    assert_eq!(
        refused,
        Err(LoginFailure::Refused(Refusal::ServiceNotEnabled(
            Service::Api
        )))
    );
}

async fn tokens_are_checked_and_revocable(kind: Kind) {
    let dir = start(kind);
    let jane = dir
        .directory
        .authenticate_admin("jane@acme", "jane-pw")
        .await
        .unwrap();
    let issued = dir
        .directory
        .issue_token(&jane, Duration::from_secs(600))
        .await
        .unwrap();
    let second = dir
        .directory
        .issue_token(&jane, Duration::from_secs(600))
        .await
        .unwrap();
    assert_ne!(issued.token, second.token);
    assert_eq!(
        dir.directory.authenticate_token(&issued.token).await,
        Ok(jane.clone())
    );

    // A changed character, another admin's name on the secret, and garbage are all refused.
    let mut tampered = issued.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let parts: Vec<&str> = issued.token.split('.').collect();
    let renamed = format!("mf1.{}.{}.{}", parts[1], "Z2luYQ", parts[3]);
    for bad in [
        tampered.as_str(),
        renamed.as_str(),
        "mf1.x",
        "",
        "Basic abc",
    ] {
        let refused = dir.directory.authenticate_token(bad).await;
        assert!(
            matches!(refused, Err(LoginFailure::Refused(_))),
            "{bad}: {refused:?}"
        );
    }

    dir.directory
        .revoke_token(&jane, &issued.token)
        .await
        .unwrap();
    assert!(
        dir.directory
            .authenticate_token(&issued.token)
            .await
            .is_err()
    );
    assert!(
        dir.directory
            .authenticate_token(&second.token)
            .await
            .is_ok()
    );
    assert_eq!(
        dir.directory.revoke_token(&jane, &issued.token).await,
        Err(DirectoryError::NotFound)
    );

    // A token past its lifetime is refused, and removed when the next one is issued.
    let short = dir
        .directory
        .issue_token(&jane, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        dir.directory
            .authenticate_token(&short.token)
            .await
            .is_err()
    );
    dir.directory
        .issue_token(&jane, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        dir.directory.revoke_token(&jane, &short.token).await,
        Err(DirectoryError::NotFound)
    );
}

async fn an_administrator_writes_only_its_own_tenants_aliases(kind: Kind) {
    let dir = start(kind);
    let jane = dir
        .directory
        .authenticate_admin("jane@acme", "jane-pw")
        .await
        .unwrap();

    // In its own tenant, with its own identity: allowed.
    let own = dir
        .directory
        .create_alias(
            jane.actor(),
            "acme.test",
            alias("desk@acme.test", &["bob@acme.test"]),
        )
        .await;
    assert!(own.is_ok(), "{own:?}");
    let changed = dir
        .directory
        .update_alias(
            jane.actor(),
            "desk@acme.test",
            AliasUpdate {
                targets: Some(vec!["alice@acme.test".into()]),
                ..AliasUpdate::default()
            },
        )
        .await;
    assert!(changed.is_ok(), "{changed:?}");
    assert!(
        dir.directory
            .delete_alias(jane.actor(), "desk@acme.test")
            .await
            .is_ok()
    );

    // In another tenant, even when Mailfold's own checks were skipped: the directory refuses.
    let foreign = dir
        .directory
        .create_alias(
            jane.actor(),
            "globex.test",
            alias("x@globex.test", &["info@globex.test"]),
        )
        .await;
    assert!(
        matches!(foreign, Err(DirectoryError::Forbidden(_))),
        "{foreign:?}"
    );
    dir.directory
        .create_alias(
            Actor::Service,
            "globex.test",
            alias("y@globex.test", &["info@globex.test"]),
        )
        .await
        .unwrap();
    let update = AliasUpdate {
        targets: Some(vec!["peggy@globex.test".into()]),
        ..AliasUpdate::default()
    };
    let foreign_update = dir
        .directory
        .update_alias(jane.actor(), "y@globex.test", update)
        .await;
    assert!(
        matches!(foreign_update, Err(DirectoryError::Forbidden(_))),
        "{foreign_update:?}"
    );
    let foreign_delete = dir
        .directory
        .delete_alias(jane.actor(), "y@globex.test")
        .await;
    assert!(
        matches!(foreign_delete, Err(DirectoryError::Forbidden(_))),
        "{foreign_delete:?}"
    );

    let untouched = dir.directory.alias("y@globex.test").await.unwrap();
    assert_eq!(untouched.targets, ["info@globex.test"]);
    assert_eq!(
        dir.directory.alias("x@globex.test").await,
        Err(DirectoryError::NotFound),
        "x@globex.test was not created"
    );
}

async fn tenants_domains_and_mailboxes_are_provisioned_end_to_end(kind: Kind) {
    let dir = start(kind);
    let tenant = dir
        .directory
        .create_tenant(NewTenant {
            id: "Hooli".into(),
            name: Some("Hooli Inc.".into()),
            settings: Settings {
                shard: Some(Some("local".into())),
                ..Settings::default()
            },
        })
        .await
        .unwrap();
    assert_eq!(tenant.id, "hooli");
    assert!(
        dir.directory
            .tenants()
            .await
            .unwrap()
            .iter()
            .any(|t| t.id == "hooli")
    );

    let domain = dir
        .directory
        .create_domain(
            "hooli",
            NewDomain {
                name: "hooli.test".into(),
                alias_names: vec!["hooli-mail.test".into()],
                ..NewDomain::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        domain.alias_names,
        [Domain::parse("hooli-mail.test").unwrap()]
    );

    let created = dir
        .directory
        .create_mailbox(
            &domain,
            NewMailbox {
                address: "Gavin@hooli.test".into(),
                aliases: vec!["ceo@hooli-mail.test".into()],
                password: Some("gavin-pw".into()),
                quota_bytes: Some(1_000_000),
                ..NewMailbox::default()
            },
            "local",
        )
        .await
        .unwrap();
    assert_eq!(created.address.as_str(), "gavin@hooli.test");
    assert_eq!(
        (created.shard.as_str(), created.quota_bytes),
        ("local", 1_000_000)
    );
    let (first, second) = (&created.store[0..2], &created.store[3..5]);
    assert!(
        created.store.ends_with(&format!("/{}", created.id)),
        "{}",
        created.store
    );
    assert!(
        first
            .chars()
            .chain(second.chars())
            .all(|c| c.is_ascii_hexdigit())
    );

    // The new mailbox is real at once: it logs in with an {ARGON2} hash and receives mail.
    let login = dir
        .directory
        .authenticate("gavin@hooli.test", "gavin-pw", Service::Pop3)
        .await;
    assert!(login.is_ok(), "{login:?}");
    assert!(matches!(
        dir.directory.resolve_recipient("ceo@hooli-mail.test").await.unwrap(),
        Resolution::Mailbox(m) if m.id == created.id
    ));

    let update = MailboxUpdate {
        forward: Some(vec!["gavin@elsewhere.example".into()]),
        quota_bytes: Some(Some(2_000_000)),
        ..MailboxUpdate::default()
    };
    let updated = dir
        .directory
        .update_mailbox(&domain, "gavin@hooli.test", update)
        .await
        .unwrap();
    assert_eq!(updated.forward, ["gavin@elsewhere.example"]);
    assert_eq!(updated.quota_bytes, 2_000_000);

    // Deleting marks the mailbox; it can no longer log in, and its address stays claimed.
    let deleted = dir
        .directory
        .delete_mailbox(&domain, "gavin@hooli.test")
        .await
        .unwrap();
    assert_eq!(deleted.status, Status::Deleting);
    let refused = dir
        .directory
        .authenticate("gavin@hooli.test", "gavin-pw", Service::Pop3)
        .await;
    assert_eq!(
        refused,
        Err(LoginFailure::Refused(Refusal::Inactive(Status::Deleting)))
    );
    let again = dir
        .directory
        .create_mailbox(
            &domain,
            NewMailbox {
                address: "gavin@hooli.test".into(),
                ..NewMailbox::default()
            },
            "local",
        )
        .await;
    assert!(
        matches!(again, Err(DirectoryError::Conflict(_))),
        "{again:?}"
    );
}

fn conflict<T>(result: &Result<T, DirectoryError>) -> bool {
    matches!(result, Err(DirectoryError::Conflict(_)))
}

async fn provisioning_limits_and_collisions_are_enforced(kind: Kind) {
    let dir = start(kind);

    // Names that are hosted already, as primary or alias names, anywhere.
    for (name, aliases) in [("acme.test", vec![]), ("new.test", vec!["acme-mail.test"])] {
        let taken = dir
            .directory
            .create_domain(
                "globex",
                NewDomain {
                    name: name.into(),
                    alias_names: aliases.iter().map(|a| a.to_string()).collect(),
                    ..NewDomain::default()
                },
            )
            .await;
        assert!(conflict(&taken), "{name}: {taken:?}");
    }
    let update = DomainUpdate {
        alias_names: Some(vec!["acme-shop.test".into()]),
        ..DomainUpdate::default()
    };
    let stolen = dir.directory.update_domain("globex.test", update).await;
    assert!(conflict(&stolen), "{stolen:?}");

    // Addresses held by a mailbox or an alias of another tenant.
    let globex = dir.directory.local_domain("globex.test").await.unwrap();
    for taken in ["peggy@globex.test", "info@globex.test"] {
        let again = dir
            .directory
            .create_mailbox(
                &globex,
                NewMailbox {
                    address: taken.into(),
                    ..NewMailbox::default()
                },
                "local",
            )
            .await;
        assert!(conflict(&again), "{taken}: {again:?}");
    }
    let outside = dir
        .directory
        .create_mailbox(
            &globex,
            NewMailbox {
                address: "x@acme.test".into(),
                ..NewMailbox::default()
            },
            "local",
        )
        .await;
    assert!(
        matches!(outside, Err(DirectoryError::Invalid(_))),
        "{outside:?}"
    );

    // Tenant limits: at most one more domain, one more mailbox, quota within the cap.
    let limits = LimitsUpdate {
        max_domains: Some(Some(2)),
        max_mailboxes: Some(Some(3)),
        max_quota_bytes: Some(Some(5_000)),
        ..LimitsUpdate::default()
    };
    let update = mailfold_directory::provision::TenantUpdate {
        settings: Settings {
            limits,
            ..Settings::default()
        },
        ..Default::default()
    };
    dir.directory.update_tenant("globex", update).await.unwrap();
    let new_domain = |name: &str| NewDomain {
        name: name.into(),
        ..NewDomain::default()
    };
    dir.directory
        .create_domain("globex", new_domain("globex2.test"))
        .await
        .unwrap();
    let third = dir
        .directory
        .create_domain("globex", new_domain("globex3.test"))
        .await;
    assert!(
        matches!(third, Err(DirectoryError::LimitReached(_))),
        "{third:?}"
    );

    let mailbox = |address: &str, quota: Option<u64>| NewMailbox {
        address: address.into(),
        quota_bytes: quota,
        ..NewMailbox::default()
    };
    // Read again: the domain carries its tenant's limits as they were when read.
    let globex = dir.directory.local_domain("globex.test").await.unwrap();
    let too_big = dir
        .directory
        .create_mailbox(&globex, mailbox("big@globex.test", Some(6_000)), "local")
        .await;
    assert!(
        matches!(too_big, Err(DirectoryError::LimitReached(_))),
        "{too_big:?}"
    );
    let unlimited = dir
        .directory
        .create_mailbox(&globex, mailbox("big@globex.test", Some(0)), "local")
        .await;
    assert!(
        matches!(unlimited, Err(DirectoryError::LimitReached(_))),
        "{unlimited:?}"
    );
    let count = dir.directory.mailboxes(&globex).await.unwrap().len();
    for index in count..3 {
        dir.directory
            .create_mailbox(
                &globex,
                mailbox(&format!("m{index}@globex.test"), None),
                "local",
            )
            .await
            .unwrap();
    }
    let over = dir
        .directory
        .create_mailbox(&globex, mailbox("over@globex.test", None), "local")
        .await;
    assert!(
        matches!(over, Err(DirectoryError::LimitReached(_))),
        "{over:?}"
    );
}

async fn administrators_are_provisioned_with_their_scope(kind: Kind) {
    let dir = start(kind);
    let new = NewAdmin {
        login: "ops".into(),
        password: "ops-pw".into(),
        mail: Some("ops@globex.test".into()),
        role: "domain-admin".into(),
        managed_domains: vec!["globex.test".into()],
        ..NewAdmin::default()
    };
    let created = dir
        .directory
        .create_admin("globex", new.clone())
        .await
        .unwrap();
    assert_eq!(
        created.scope,
        AdminScope::Domains(vec![Domain::parse("globex.test").unwrap()])
    );
    let login = dir
        .directory
        .authenticate_admin("ops@globex.test", "ops-pw")
        .await;
    assert_eq!(login, Ok(created));

    // Another tenant's domain cannot be managed, and roles are a closed set.
    let foreign = NewAdmin {
        login: "ops2".into(),
        managed_domains: vec!["acme.test".into()],
        ..new.clone()
    };
    let refused = dir.directory.create_admin("globex", foreign).await;
    assert!(
        matches!(refused, Err(DirectoryError::Invalid(_))),
        "{refused:?}"
    );
    let bad_role = NewAdmin {
        login: "ops3".into(),
        role: "root".into(),
        ..new.clone()
    };
    let refused = dir.directory.create_admin("globex", bad_role).await;
    assert!(
        matches!(refused, Err(DirectoryError::Invalid(_))),
        "{refused:?}"
    );
    let twice = dir.directory.create_admin("globex", new).await;
    assert!(
        matches!(twice, Err(DirectoryError::Conflict(_))),
        "{twice:?}"
    );

    dir.directory.delete_admin("globex", "ops").await.unwrap();
    assert!(
        dir.directory
            .authenticate_admin("ops@globex", "ops-pw")
            .await
            .is_err()
    );
}

async fn tenants_and_domains_are_removed_only_when_empty(kind: Kind) {
    let dir = start(kind);
    let busy = dir.directory.delete_tenant("globex").await;
    assert!(matches!(busy, Err(DirectoryError::Conflict(_))), "{busy:?}");
    let busy = dir.directory.delete_domain("globex.test").await;
    assert!(matches!(busy, Err(DirectoryError::Conflict(_))), "{busy:?}");

    dir.directory
        .create_tenant(NewTenant {
            id: "brief".into(),
            ..NewTenant::default()
        })
        .await
        .unwrap();
    dir.directory
        .create_domain(
            "brief",
            NewDomain {
                name: "brief.test".into(),
                ..NewDomain::default()
            },
        )
        .await
        .unwrap();
    dir.directory
        .create_admin(
            "brief",
            NewAdmin {
                login: "boss".into(),
                password: "boss-pw".into(),
                role: "owner".into(),
                ..NewAdmin::default()
            },
        )
        .await
        .unwrap();
    dir.directory.delete_domain("brief.test").await.unwrap();
    assert_eq!(
        dir.directory.local_domain("brief.test").await.unwrap_err(),
        DirectoryError::NotFound
    );
    dir.directory.delete_tenant("brief").await.unwrap();
    assert_eq!(
        dir.directory.tenant("brief").await.unwrap_err(),
        DirectoryError::NotFound
    );
}

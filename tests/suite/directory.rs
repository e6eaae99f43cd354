//! The directory conformance suite: every test runs against a private slapd (module `ldap`)
//! and against the LDIF backend (module `ldif`) with the same data and the same assertions.
//! The data is described in examples/quickstart.ldif and tests/data/conformance.ldif.
//! Tests that only make sense for a server (outage, restart, TLS) are at the bottom.

use std::time::{Duration, Instant};

use mailfold_directory::{
    Actor, AliasUpdate, CacheConfig, DirectoryError, DomainResolution, LoginFailure, NewAlias,
    Refusal, Resolution, Service, Skip, Status,
};
use mailfold_tests::fixture::{Kind, Options, READER_ACCOUNT, TestDirectory};

fn start(kind: Kind) -> TestDirectory {
    TestDirectory::start(Options::new(kind))
}

/// Asserts that `result` is `Err(DirectoryError::<variant>(_))`, showing `message` otherwise.
macro_rules! assert_error {
    ($result:expr, $variant:ident, $message:literal) => {
        assert!(
            matches!($result, Err(DirectoryError::$variant(_))),
            $message
        )
    };
}

mailfold_tests::on_both_backends!(
    every_hash_scheme_logs_in,
    wrong_empty_and_unknown_credentials_are_refused,
    inactive_accounts_are_refused_even_with_the_right_password,
    services_are_honoured_at_every_level,
    logins_work_through_alias_domains_and_secondary_addresses,
    an_alias_address_cannot_log_in,
    domains_resolve_as_local_alias_or_foreign,
    mailboxes_carry_inherited_limits,
    nested_aliases_deliver_once_to_each_mailbox,
    external_targets_and_unknown_local_targets_are_reported,
    alias_loops_and_deep_chains_are_cut,
    inactive_aliases_and_targets_are_not_delivered,
    catch_all_sub_addresses_and_unknowns_resolve_as_documented,
    injection_attempts_find_nothing,
    aliases_can_be_created_listed_updated_and_deleted,
    alias_changes_that_collide_or_loop_are_refused,
    alias_limits_are_enforced,
    mailboxes_and_aliases_are_counted,
    the_cache_answers_repeated_lookups,
);

async fn login(
    dir: &TestDirectory,
    user: &str,
    password: &str,
    service: Service,
) -> Result<String, LoginFailure> {
    dir.directory
        .authenticate(user, password, service)
        .await
        .map(|m| m.address.to_string())
}

fn refusal(result: Result<String, LoginFailure>) -> Refusal {
    match result {
        Err(LoginFailure::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn every_hash_scheme_logs_in(kind: Kind) {
    let dir = start(kind);
    // argon2id, $6$, $5$, $2b$, $1$, {SSHA}, {SSHA256}, {SSHA512}: see quickstart.ldif.
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        let address = format!("{user}@acme.test");
        let result = login(&dir, &address, &format!("{user}-pw"), Service::Imap).await;
        assert_eq!(result, Ok(address.clone()), "{address}");
    }
}

async fn wrong_empty_and_unknown_credentials_are_refused(kind: Kind) {
    let dir = start(kind);
    let wrong = login(&dir, "alice@acme.test", "alice-pw ", Service::Imap).await;
    assert_eq!(refusal(wrong), Refusal::WrongPassword);
    let empty = login(&dir, "alice@acme.test", "", Service::Imap).await;
    assert_eq!(refusal(empty), Refusal::EmptyPassword);
    let unknown = login(&dir, "nobody@acme.test", "x", Service::Imap).await;
    assert_eq!(refusal(unknown), Refusal::UnknownLogin);
    let foreign = login(&dir, "alice@elsewhere.example", "alice-pw", Service::Imap).await;
    assert_eq!(refusal(foreign), Refusal::UnknownLogin);
    let garbage = login(&dir, "not an address", "x", Service::Imap).await;
    assert_eq!(refusal(garbage), Refusal::InvalidLogin);
    // A password of another user does not open this one (bob's hash scheme differs too).
    let crossed = login(&dir, "alice@acme.test", "bob-pw", Service::Imap).await;
    assert_eq!(refusal(crossed), Refusal::WrongPassword);
}

async fn inactive_accounts_are_refused_even_with_the_right_password(kind: Kind) {
    let dir = start(kind);
    let cases = [
        ("ivan@acme.test", Status::Disabled),       // the mailbox
        ("judy@acme.test", Status::Suspended),      // the mailbox
        ("oscar@paused.test", Status::Suspended),   // its domain
        ("walter@initech.test", Status::Suspended), // its tenant
    ];
    for (user, status) in cases {
        let password = format!("{}-pw", user.split('@').next().unwrap());
        let result = login(&dir, user, &password, Service::Imap).await;
        assert_eq!(refusal(result), Refusal::Inactive(status), "{user}");
    }
    // With a wrong password the reason is the password, not the status.
    let wrong = login(&dir, "ivan@acme.test", "nope", Service::Imap).await;
    assert_eq!(refusal(wrong), Refusal::WrongPassword);
}

async fn services_are_honoured_at_every_level(kind: Kind) {
    let dir = start(kind);
    // carol's own list: deliver, imap, pop3.
    assert!(
        login(&dir, "carol@acme.test", "carol-pw", Service::Pop3)
            .await
            .is_ok()
    );
    let smtp = login(&dir, "carol@acme.test", "carol-pw", Service::Smtp).await;
    assert_eq!(refusal(smtp), Refusal::ServiceNotEnabled(Service::Smtp));
    // rita's tenant allows deliver and imap only; rita herself lists nothing.
    assert!(
        login(&dir, "rita@readonly.test", "rita-pw", Service::Imap)
            .await
            .is_ok()
    );
    let pop3 = login(&dir, "rita@readonly.test", "rita-pw", Service::Pop3).await;
    assert_eq!(refusal(pop3), Refusal::ServiceNotEnabled(Service::Pop3));
    // Without any list, every service.
    for service in [Service::Smtp, Service::Pop3, Service::Api] {
        assert!(
            login(&dir, "alice@acme.test", "alice-pw", service)
                .await
                .is_ok(),
            "{service}"
        );
    }
}

async fn logins_work_through_alias_domains_and_secondary_addresses(kind: Kind) {
    let dir = start(kind);
    let bob = Ok("bob@acme.test".to_string());
    assert_eq!(
        login(&dir, "bob@acme-mail.test", "bob-pw", Service::Imap).await,
        bob
    );
    assert_eq!(
        login(&dir, "Robert@ACME.test", "bob-pw", Service::Imap).await,
        bob
    );
}

async fn an_alias_address_cannot_log_in(kind: Kind) {
    let dir = start(kind);
    let result = login(&dir, "sales@acme.test", "alice-pw", Service::Imap).await;
    assert_eq!(refusal(result), Refusal::Ambiguous);
}

async fn domains_resolve_as_local_alias_or_foreign(kind: Kind) {
    let dir = start(kind);
    let DomainResolution::Local(acme) = dir.directory.resolve_domain("ACME.test").await.unwrap()
    else {
        panic!("acme.test is local");
    };
    assert_eq!(acme.name.as_str(), "acme.test");
    assert_eq!(acme.tenant.id, "acme");
    assert_eq!(
        acme.alias_names
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>(),
        ["acme-mail.test"]
    );

    match dir
        .directory
        .resolve_domain("acme-mail.test")
        .await
        .unwrap()
    {
        DomainResolution::Alias { alias, domain } => {
            assert_eq!(alias.as_str(), "acme-mail.test");
            assert_eq!(domain.name.as_str(), "acme.test");
        }
        other => panic!("acme-mail.test is an alias domain, got {other:?}"),
    }
    let globex = dir.directory.resolve_domain("globex.test").await.unwrap();
    assert_eq!(globex.local().unwrap().catch_all, ["info@globex.test"]);
    let paused = dir.directory.resolve_domain("paused.test").await.unwrap();
    assert_eq!(
        paused.local().unwrap().effective_status(),
        Status::Suspended
    );
    let initech = dir.directory.resolve_domain("initech.test").await.unwrap();
    assert_eq!(
        initech.local().unwrap().effective_status(),
        Status::Suspended
    );
    let foreign = dir
        .directory
        .resolve_domain("elsewhere.example")
        .await
        .unwrap();
    assert_eq!(foreign, DomainResolution::NotLocal);
}

async fn mailbox(dir: &TestDirectory, address: &str) -> mailfold_directory::Mailbox {
    match dir.directory.resolve_recipient(address).await.unwrap() {
        Resolution::Mailbox(mailbox) => mailbox,
        other => panic!("{address} should be a mailbox, got {other:?}"),
    }
}

async fn mailboxes_carry_inherited_limits(kind: Kind) {
    let dir = start(kind);
    let alice = mailbox(&dir, "alice@acme.test").await;
    assert_eq!(alice.id, "u-0001");
    assert_eq!(
        (alice.shard.as_str(), alice.store.as_str()),
        ("local", "2a/4c/u-0001")
    );
    assert_eq!(alice.quota_bytes, 2_147_483_648, "her own quota");
    assert_eq!(alice.max_message_size, 52_428_800, "the tenant's limit");
    assert_eq!(alice.tenant, "acme");

    let bob = mailbox(&dir, "bob@acme.test").await;
    assert_eq!(bob.quota_bytes, 1_073_741_824, "the tenant's default quota");
    let frank = mailbox(&dir, "frank@acme.test").await;
    assert_eq!(frank.quota_messages, 10_000);
    let peggy = mailbox(&dir, "peggy@globex.test").await;
    assert_eq!(
        peggy.max_message_size, 1_048_576,
        "her limit is stricter than the tenant's"
    );
    let info = mailbox(&dir, "info@globex.test").await;
    assert_eq!((info.quota_bytes, info.max_message_size), (0, 10_485_760));

    let mallory = mailbox(&dir, "mallory@acme.test").await;
    assert_eq!(
        mallory.forward,
        ["mallory@elsewhere.example", "alice@acme.test"]
    );
    let ivan = mailbox(&dir, "ivan@acme.test").await;
    assert_eq!(ivan.status, Status::Disabled);
    assert!(!ivan.allows(Service::Deliver));
}

async fn expansion(dir: &TestDirectory, address: &str) -> mailfold_directory::Expansion {
    match dir.directory.resolve_recipient(address).await.unwrap() {
        Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion } => expansion,
        other => panic!("{address} should expand, got {other:?}"),
    }
}

fn addresses(expansion: &mailfold_directory::Expansion) -> Vec<String> {
    expansion
        .mailboxes
        .iter()
        .map(|m| m.address.to_string())
        .collect()
}

async fn nested_aliases_deliver_once_to_each_mailbox(kind: Kind) {
    let dir = start(kind);
    let team = expansion(&dir, "team@acme.test").await;
    assert_eq!(
        addresses(&team),
        ["alice@acme.test", "bob@acme.test", "carol@acme.test"]
    );
    assert!(
        team.external.is_empty() && team.skipped.is_empty(),
        "{team:?}"
    );
    // Through the alias domain too.
    let sales = expansion(&dir, "sales@acme-mail.test").await;
    assert_eq!(addresses(&sales), ["alice@acme.test", "bob@acme.test"]);
}

async fn external_targets_and_unknown_local_targets_are_reported(kind: Kind) {
    let dir = start(kind);
    let partners = expansion(&dir, "partners@acme.test").await;
    assert_eq!(addresses(&partners), ["alice@acme.test"]);
    let external: Vec<String> = partners.external.iter().map(|a| a.to_string()).collect();
    assert_eq!(external, ["liaison@partner.example"]);

    let broken = expansion(&dir, "broken@acme.test").await;
    assert_eq!(addresses(&broken), ["alice@acme.test"]);
    assert_eq!(broken.external.len(), 1);
    assert_eq!(
        broken.skipped,
        [("nobody@acme.test".to_string(), Skip::Unknown)]
    );
}

async fn alias_loops_and_deep_chains_are_cut(kind: Kind) {
    let dir = start(kind);
    let looped = expansion(&dir, "loop-a@acme.test").await;
    assert_eq!(addresses(&looped), ["alice@acme.test"]);
    assert_eq!(
        looped.skipped,
        [("loop-a@acme.test".to_string(), Skip::Loop)]
    );

    let deep = expansion(&dir, "deep1@acme.test").await;
    assert!(deep.is_empty(), "{deep:?}");
    assert_eq!(
        deep.skipped,
        [("deep9@acme.test".to_string(), Skip::TooDeep)]
    );
    // Starting lower in the chain stays within the limit.
    let shallow = expansion(&dir, "deep5@acme.test").await;
    assert_eq!(addresses(&shallow), ["alice@acme.test"]);
}

async fn inactive_aliases_and_targets_are_not_delivered(kind: Kind) {
    let dir = start(kind);
    let off = dir
        .directory
        .resolve_recipient("off@acme.test")
        .await
        .unwrap();
    assert_eq!(
        off,
        Resolution::Inactive {
            status: Status::Disabled
        }
    );
    let to_ivan = expansion(&dir, "to-ivan@acme.test").await;
    assert!(to_ivan.is_empty());
    assert_eq!(
        to_ivan.skipped,
        [("ivan@acme.test".to_string(), Skip::Inactive)]
    );
    let paused = dir
        .directory
        .resolve_recipient("oscar@paused.test")
        .await
        .unwrap();
    assert_eq!(
        paused,
        Resolution::Inactive {
            status: Status::Suspended
        }
    );
}

async fn catch_all_sub_addresses_and_unknowns_resolve_as_documented(kind: Kind) {
    let dir = start(kind);
    let catch_all = dir
        .directory
        .resolve_recipient("anything@globex.test")
        .await
        .unwrap();
    let Resolution::CatchAll { expansion } = catch_all else {
        panic!("catch-all expected")
    };
    assert_eq!(addresses(&expansion), ["info@globex.test"]);
    // An existing address in a catch-all domain is still itself.
    assert_eq!(mailbox(&dir, "peggy@globex.test").await.id, "u-0102");

    assert_eq!(mailbox(&dir, "alice+news@acme.test").await.id, "u-0001");
    assert_eq!(mailbox(&dir, "robert+x@acme-mail.test").await.id, "u-0002");
    let unknown = dir
        .directory
        .resolve_recipient("nobody@acme.test")
        .await
        .unwrap();
    assert_eq!(unknown, Resolution::Unknown);
    let foreign = dir
        .directory
        .resolve_recipient("alice@elsewhere.example")
        .await
        .unwrap();
    assert_eq!(foreign, Resolution::NotLocal);
}

async fn injection_attempts_find_nothing(kind: Kind) {
    let dir = start(kind);
    // A star is a legal local-part character: it must match literally, not everything.
    let star = dir
        .directory
        .resolve_recipient("*@acme.test")
        .await
        .unwrap();
    assert_eq!(star, Resolution::Unknown);
    let star_login = login(&dir, "*@acme.test", "alice-pw", Service::Imap).await;
    assert_eq!(refusal(star_login), Refusal::UnknownLogin);

    let long = format!("{}@acme.test", "a".repeat(5000));
    for input in [
        "alice@acme.test)(mailfoldAddress=*",
        "*)(objectClass=*",
        "alice\\2a@acme.test",
        "alice\0@acme.test",
        "alice@acme.test\0",
        "a@*",
        "a@acme.test,ou=x",
        long.as_str(),
    ] {
        let resolved = dir.directory.resolve_recipient(input).await;
        assert_error!(resolved, Invalid, "{input:?}: {resolved:?}");
        let logged = login(&dir, input, "alice-pw", Service::Imap).await;
        assert_eq!(refusal(logged), Refusal::InvalidLogin, "{input:?}");
    }
    for domain in ["*", "acme.test)(x=*", "acme.test\\", ""] {
        let resolved = dir.directory.resolve_domain(domain).await;
        assert_error!(resolved, Invalid, "{domain:?}: {resolved:?}");
    }
}

/// Creates an alias through the directory API.
async fn create(
    dir: &TestDirectory,
    domain: &str,
    address: &str,
    targets: &[&str],
) -> Result<mailfold_directory::Alias, DirectoryError> {
    dir.directory
        .create_alias(Actor::Service, domain, new_alias(address, targets))
        .await
}

fn new_alias(address: &str, targets: &[&str]) -> NewAlias {
    NewAlias {
        address: address.to_string(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        description: Some("made by a test".to_string()),
    }
}

async fn aliases_can_be_created_listed_updated_and_deleted(kind: Kind) {
    let dir = start(kind);
    let created = create(
        &dir,
        "acme.test",
        "Support@acme.test",
        &["carol@acme.test", "x@ext.example"],
    )
    .await
    .unwrap();
    assert_eq!(created.address.as_str(), "support@acme.test");
    let support = expansion(&dir, "support@acme.test").await;
    assert_eq!(addresses(&support), ["carol@acme.test"]);

    let listed = dir.directory.aliases("acme.test").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.address.as_str()).collect();
    assert!(
        names.contains(&"support@acme.test") && names.contains(&"sales@acme.test"),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "listed in address order");

    let update = AliasUpdate {
        targets: Some(vec!["dave@acme.test".into()]),
        description: Some(None),
        ..AliasUpdate::default()
    };
    let updated = dir
        .directory
        .update_alias(Actor::Service, "support@acme.test", update)
        .await
        .unwrap();
    assert_eq!(updated.targets, ["dave@acme.test"]);
    assert_eq!(updated.description, None);
    assert_eq!(
        addresses(&expansion(&dir, "support@acme.test").await),
        ["dave@acme.test"]
    );

    dir.directory
        .delete_alias(Actor::Service, "support@acme.test")
        .await
        .unwrap();
    let gone = dir
        .directory
        .resolve_recipient("support@acme.test")
        .await
        .unwrap();
    assert_eq!(gone, Resolution::Unknown);
    let again = dir
        .directory
        .delete_alias(Actor::Service, "support@acme.test")
        .await;
    assert_eq!(again, Err(DirectoryError::NotFound));
}

async fn alias_changes_that_collide_or_loop_are_refused(kind: Kind) {
    let dir = start(kind);
    // robert@acme.test is bob's second address: taken, though no entry is named after it.
    for taken in ["robert@acme.test", "sales@acme.test", "alice@acme.test"] {
        let result = create(&dir, "acme.test", taken, &["dave@acme.test"]).await;
        assert_error!(result, Conflict, "{taken}: {result:?}");
    }
    let elsewhere = create(&dir, "acme.test", "x@globex.test", &["dave@acme.test"]).await;
    assert_error!(elsewhere, Invalid, "{elsewhere:?}");
    let no_targets = create(&dir, "acme.test", "x@acme.test", &[]).await;
    assert_error!(no_targets, Invalid, "{no_targets:?}");
    let bad_target = create(&dir, "acme.test", "x@acme.test", &["a%b@c.test"]).await;
    assert_error!(bad_target, Invalid, "{bad_target:?}");
    let alias_domain = create(
        &dir,
        "acme-mail.test",
        "x@acme-mail.test",
        &["dave@acme.test"],
    )
    .await;
    assert_eq!(alias_domain.unwrap_err(), DirectoryError::NotFound);

    // team -> sales already; sales -> team would close the loop.
    let update = AliasUpdate {
        targets: Some(vec!["team@acme.test".into()]),
        ..AliasUpdate::default()
    };
    let looped = dir
        .directory
        .update_alias(Actor::Service, "sales@acme.test", update)
        .await;
    assert_error!(looped, Loop, "{looped:?}");
    let pointing_at_itself = create(&dir, "acme.test", "me@acme.test", &["me@acme.test"]).await;
    assert_error!(pointing_at_itself, Loop, "{pointing_at_itself:?}");
    // Nothing changed.
    assert_eq!(
        addresses(&expansion(&dir, "sales@acme.test").await),
        ["alice@acme.test", "bob@acme.test"]
    );
}

async fn alias_limits_are_enforced(kind: Kind) {
    let dir = start(kind);
    // readonly.test may hold one alias; it has none yet, and no ou=aliases entry is needed
    // in advance: the directory creates it.
    let first = create(
        &dir,
        "readonly.test",
        "a@readonly.test",
        &["rita@readonly.test"],
    )
    .await;
    assert!(first.is_ok(), "{first:?}");
    let second = create(
        &dir,
        "readonly.test",
        "b@readonly.test",
        &["rita@readonly.test"],
    )
    .await;
    assert_error!(second, LimitReached, "{second:?}");
}

async fn mailboxes_and_aliases_are_counted(kind: Kind) {
    let dir = start(kind);
    // acme.test: 9 quick-start mailboxes + judy and mallory.
    assert_eq!(
        dir.directory.count_mailboxes("acme.test").await.unwrap(),
        11
    );
    // 3 quick-start aliases + loop-a, loop-b, deep1..deep10, broken, off, to-ivan.
    assert_eq!(dir.directory.count_aliases("acme.test").await.unwrap(), 18);
    assert_eq!(dir.directory.count_aliases("globex.test").await.unwrap(), 0);
    assert_eq!(
        dir.directory.count_mailboxes("elsewhere.example").await,
        Err(DirectoryError::NotFound)
    );
}

async fn the_cache_answers_repeated_lookups(kind: Kind) {
    let mut options = Options::new(kind);
    options.cache = CacheConfig::default();
    let dir = TestDirectory::start(options);
    for _ in 0..5 {
        assert_eq!(mailbox(&dir, "alice@acme.test").await.id, "u-0001");
        let unknown = dir
            .directory
            .resolve_recipient("nobody@acme.test")
            .await
            .unwrap();
        assert_eq!(unknown, Resolution::Unknown);
    }
    let hits = dir.counter("mailfold_directory_cache_hits_total", ("kind", "recipient"));
    let misses = dir.counter(
        "mailfold_directory_cache_misses_total",
        ("kind", "recipient"),
    );
    assert_eq!(
        (hits, misses),
        (8, 2),
        "positive and negative answers are both cached"
    );

    // A change through the directory is visible at once.
    create(&dir, "acme.test", "nobody@acme.test", &["alice@acme.test"])
        .await
        .unwrap();
    assert_eq!(
        addresses(&expansion(&dir, "nobody@acme.test").await),
        ["alice@acme.test"]
    );
}

// Server-only behaviour.

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_is_unavailable_within_the_timeout_and_a_restarted_one_is_used_again() {
    let mut options = Options::new(Kind::Ldap);
    options.timeout = Duration::from_secs(1);
    options.account = READER_ACCOUNT;
    let mut dir = TestDirectory::start(options);
    assert_eq!(mailbox(&dir, "alice@acme.test").await.id, "u-0001");

    dir.slapd.as_mut().unwrap().stop();
    let started = Instant::now();
    let down = dir.directory.resolve_recipient("bob@acme.test").await;
    assert!(matches!(&down, Err(e) if e.is_temporary()), "{down:?}");
    let login_down = dir
        .directory
        .authenticate("bob@acme.test", "bob-pw", Service::Imap)
        .await;
    assert!(
        matches!(login_down, Err(LoginFailure::Unavailable(_))),
        "{login_down:?}"
    );
    assert!(dir.directory.ping().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );

    dir.slapd.as_mut().unwrap().restart().unwrap();
    assert_eq!(mailbox(&dir, "bob@acme.test").await.id, "u-0002");
    assert!(
        login(&dir, "bob@acme.test", "bob-pw", Service::Imap)
            .await
            .is_ok()
    );
    assert!(dir.directory.ping().await.is_ok());
}

/// A second mailbox claiming bob's address. slapadd does not run slapo-unique, so this is how a
/// directory with duplicate addresses (an import gone wrong) looks to Mailfold.
const DUPLICATE_BOB: &str = "dn: uid=u-0999,ou=mailboxes,mailfoldDomainName=acme.test,ou=domains,\
mailfoldTenantId=acme,o=tenants,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: mailfoldMailbox
uid: u-0999
cn: Impostor
sn: Impostor
mail: impostor@acme.test
mailfoldAddress: impostor@acme.test
mailfoldAddress: bob@acme.test
mailfoldMailShard: local
mailfoldMailStore: 00/00/u-0999
userPassword: {SSHA}06Xs7Uwm1aUsvsW0ZzWybdh8vU/mqV64
";

#[tokio::test(flavor = "multi_thread")]
async fn an_address_held_by_two_entries_is_never_resolved_to_either() {
    let mut options = Options::new(Kind::Ldap);
    options.extra = Some(DUPLICATE_BOB.to_string());
    let dir = TestDirectory::start(options);
    // Routing waits (temporary) rather than picking one; logging in is refused.
    let routed = dir.directory.resolve_recipient("bob@acme.test").await;
    assert!(
        matches!(&routed, Err(DirectoryError::Inconsistent(_))),
        "{routed:?}"
    );
    let logged = login(&dir, "bob@acme.test", "bob-pw", Service::Imap).await;
    assert_eq!(refusal(logged), Refusal::Ambiguous);
    let other = login(&dir, "bob@acme.test", "mallory-pw", Service::Imap).await;
    assert_eq!(refusal(other), Refusal::Ambiguous);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ldif_file_with_an_address_held_twice_does_not_load() {
    let mut options = Options::new(Kind::Ldif);
    options.extra = Some(DUPLICATE_BOB.to_string());
    let error = TestDirectory::try_start(options)
        .err()
        .expect("the load must fail");
    assert!(error.to_string().contains("bob@acme.test"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_only_account_can_route_but_not_write() {
    let mut options = Options::new(Kind::Ldap);
    options.account = READER_ACCOUNT;
    let dir = TestDirectory::start(options);
    assert_eq!(mailbox(&dir, "alice@acme.test").await.id, "u-0001");
    let write = create(&dir, "acme.test", "new@acme.test", &["alice@acme.test"]).await;
    assert_error!(write, Forbidden, "{write:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_and_ldaps_work_with_the_configured_ca() {
    for ldaps in [false, true] {
        let mut options = Options::new(Kind::Ldap);
        options.tls = Some(ldaps);
        let dir = TestDirectory::start(options);
        assert_eq!(
            mailbox(&dir, "alice@acme.test").await.id,
            "u-0001",
            "ldaps: {ldaps}"
        );
        assert!(
            login(&dir, "alice@acme.test", "alice-pw", Service::Imap)
                .await
                .is_ok()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_service_password_makes_the_directory_unavailable_not_empty() {
    let mut options = Options::new(Kind::Ldap);
    options.account = ("cn=reader,ou=system,dc=example,dc=test", "wrong");
    let dir = TestDirectory::start(options);
    let result = dir.directory.resolve_recipient("alice@acme.test").await;
    assert!(matches!(&result, Err(e) if e.is_temporary()), "{result:?}");
}
